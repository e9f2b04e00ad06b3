"""Fixed costs (#23): a `.pth` is converted once and later commands read the converted
file without torch; a changed `.pth` is converted anew."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import make_torch_vgg, save_pth

# Runs the CLI and says, on exit, whether the process imported torch.
WITH_TORCH_REPORT = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(
    "torch imported\\n" if "torch" in sys.modules else "torch not imported\\n"))
from jaxviz.cli import main
main()
"""


def cli(*args) -> subprocess.CompletedProcess:
  result = subprocess.run([sys.executable, "-c", WITH_TORCH_REPORT, *map(str, args)],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  return result


def test_a_pth_is_converted_once_then_read_without_torch(tmp_path, vgg16_pth, photo_files,
                                                         empty_jaxviz_cache):
  weights = tmp_path / "weights.pth"
  weights.write_bytes(vgg16_pth.read_bytes())
  probe = ["probe", photo_files["chelsea.jpg"], "--layer", "2", "--no-renders", "--json",
           "--weights", weights]
  first = cli(*probe)
  assert "converting" in first.stderr and "torch imported" in first.stderr
  second = cli(*probe)
  assert "converting" not in second.stderr and "torch not imported" in second.stderr
  assert json.loads(second.stdout)["means"] == json.loads(first.stdout)["means"]

  changed = make_torch_vgg(seed=1)  # other weights, saved under the same name
  save_pth(changed, weights)
  third = cli(*probe)
  assert "converting" in third.stderr
  assert not np.allclose(json.loads(third.stdout)["means"], json.loads(second.stdout)["means"])
  assert len(list((empty_jaxviz_cache / "converted").glob("*.safetensors"))) == 2


def test_commands_that_load_no_model_start_without_jax(tmp_path):
  """`layers`, `info` and `atlas` (jaxviz.app.no_model) import no JAX: --help speed."""
  report = ("import atexit, sys\natexit.register(lambda: sys.stderr.write("
            "'jax imported\\n' if 'jax' in sys.modules else 'jax not imported\\n'))\n"
            "from jaxviz.cli import main\nmain()\n")
  (tmp_path / "empty").mkdir()
  for args in (["layers", "--json"], ["atlas", tmp_path / "empty"],
               ["info", tmp_path / "missing.png"]):
    result = subprocess.run([sys.executable, "-c", report, *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "jax not imported", (args, result.stderr)
  assert json.loads(subprocess.run([sys.executable, "-m", "jaxviz.cli", "layers", "--json"],
                                   capture_output=True, text=True).stdout)["arch"] == "vgg16"
