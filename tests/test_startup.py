"""Fixed costs (#23): a `.pth` is converted once and later commands read the converted
file without torch; a changed `.pth` is converted anew."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import make_torch_vgg, run_cli, save_pth

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


def test_a_pth_is_converted_once_and_torch_is_never_imported(tmp_path, vgg16_pth, photo_files,
                                                             empty_jaxviz_cache):
  """A `.pth` is converted on first use by jaxviz's own reader, then its converted copy
  is read; neither imports torch."""
  weights = tmp_path / "weights.pth"
  weights.write_bytes(vgg16_pth.read_bytes())
  probe = ["probe", photo_files["chelsea.jpg"], "--layer", "2", "--no-renders", "--json",
           "--weights", weights]
  first = cli(*probe)
  assert "converting" in first.stderr and "torch not imported" in first.stderr
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
  """`layers`, `info`, `atlas` and `cache` (jaxviz.app.no_model) import no JAX."""
  report = ("import atexit, sys\natexit.register(lambda: sys.stderr.write("
            "'jax imported\\n' if 'jax' in sys.modules else 'jax not imported\\n'))\n"
            "from jaxviz.cli import main\nmain()\n")
  (tmp_path / "empty").mkdir()
  for args in (["layers", "--json"], ["atlas", tmp_path / "empty"],
               ["info", tmp_path / "missing.png"], ["cache", "--json"]):
    result = subprocess.run([sys.executable, "-c", report, *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    assert result.stderr.splitlines()[-1] == "jax not imported", (args, result.stderr)
  assert json.loads(subprocess.run([sys.executable, "-m", "jaxviz.cli", "layers", "--json"],
                                   capture_output=True, text=True).stdout)["arch"] == "vgg16"


def test_cache_lists_and_clears_what_jaxviz_keeps(empty_jaxviz_cache, tmp_path):
  """`jaxviz cache` lists the user cache's entries with sizes and --clear empties it, inside
  the directory only: a link in it is removed as a link, its target kept."""
  cache = empty_jaxviz_cache
  (cache / "converted").mkdir(parents=True)
  (cache / "converted" / "ab.safetensors").write_bytes(b"x" * 3000)
  (cache / "resnet50-imagenet.safetensors").write_bytes(b"y" * 5000)
  outside = tmp_path / "precious.bin"
  outside.write_bytes(b"z" * 7000)
  (cache / "xla").mkdir()
  (cache / "xla" / "link").symlink_to(outside)
  listed = json.loads(run_cli("cache", "--json").stdout)
  sizes = {entry["name"]: (entry["bytes"], entry["files"]) for entry in listed["entries"]}
  assert sizes == {"resnet50-imagenet.safetensors": (5000, 1), "converted": (3000, 1),
                   "xla": (0, 0)}
  assert listed["bytes"] == 8000 and not listed["cleared"]
  assert "resnet50's published weights" in run_cli("cache").stdout
  cleared = json.loads(run_cli("cache", "--clear", "--json").stdout)
  assert cleared["cleared"] and cleared["bytes"] == 8000
  assert list(cache.iterdir()) == [] and outside.read_bytes() == b"z" * 7000
  assert json.loads(run_cli("cache", "--json").stdout)["entries"] == []
