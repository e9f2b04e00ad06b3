"""jaxviz without torch, as `pip install jaxviz-fv` installs it: the published weights are
downloaded by their address, checked and converted, `.pth` files are read, and the
README's commands run, in processes where `import torch` fails.

Each command runs in a subprocess whose `sitecustomize` (first on PYTHONPATH, so in
every process jaxviz starts, its CPU workers included) makes torch and torchvision
unimportable; it also points VGG16's published address at a local copy, as no test
may use the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxviz import fileio

from conftest import strict_json

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]

BLOCKER = """\
import os
import sys

sys.modules["torch"] = None  # `import torch` raises ImportError from here on
sys.modules["torchvision"] = None
if os.environ.get("SERVED_VGG16_URL"):
  import jaxviz_convert.torchvision_vgg as torchvision_vgg

  torchvision_vgg.IMAGENET_URLS["vgg16"] = os.environ["SERVED_VGG16_URL"]
"""


@pytest.fixture
def no_torch(tmp_path):
  """Runs `python ARGS...` in a process where torch cannot be imported."""
  site = tmp_path / "no-torch-site"
  site.mkdir()
  (site / "sitecustomize.py").write_text(BLOCKER)

  def run(*args, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(site), **(env or {})}
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=full_env)
  return run


def test_the_blocker_blocks(no_torch):
  """The premise of every test here: torch does not import in such a process."""
  result = no_torch("-c", "import torch")
  assert result.returncode != 0 and "import of torch halted" in result.stderr


def test_convert_needs_no_torch(no_torch, vgg16_pth, vgg16_safetensors, tmp_path):
  """`jaxviz convert` without torch writes the very bytes the tests' converter writes."""
  out = tmp_path / "vgg16.safetensors"
  result = no_torch("-m", "jaxviz.cli", "convert", vgg16_pth, "-o", out, "--json")
  assert result.returncode == 0, result.stderr
  assert strict_json(result.stdout)["arch"] == "vgg16"
  assert fileio.sha256_file(out) == fileio.sha256_file(vgg16_safetensors)


def test_imagenet_is_downloaded_and_rendered_without_torch(no_torch, vgg16_pth, tmp_path):
  """The README's main command, `--weights imagenet`, from nothing: the published file
  is downloaded into torch's cache (served locally), checked against its name's hash,
  converted once, and the render is written."""
  name = f"vgg16-{fileio.sha256_file(vgg16_pth)[:8]}.pth"
  served = tmp_path / "served" / name
  served.parent.mkdir()
  served.symlink_to(vgg16_pth)
  env = {"SERVED_VGG16_URL": served.as_uri(), "TORCH_HOME": str(tmp_path / "torch-home"),
         "JAXVIZ_CACHE_DIR": str(tmp_path / "jaxviz-cache")}
  out = tmp_path / "out"
  result = no_torch("-m", "jaxviz.cli", "render", "-l", "10", "-m", "0", "-o", out, "--json",
                    *TINY, env=env)
  assert result.returncode == 0, result.stderr
  assert f"downloading ImageNet vgg16 ({name})" in result.stderr
  record = strict_json(result.stdout)
  assert record["identity"]["weights"]["label"] == "imagenet", json.dumps(record["identity"])
  assert (out / "10_0.png").is_file()
  assert (tmp_path / "torch-home" / "hub" / "checkpoints" / name).is_file()
  assert (tmp_path / "jaxviz-cache" / "vgg16-imagenet.safetensors").is_file()
