"""The example notebooks run as committed (#21): executed offline in a fresh kernel, in a
temporary folder, so that a change to the API that breaks them fails here."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbclient
import nbformat
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_committed_notebook_has_no_outputs():
  notebook = nbformat.read(EXAMPLES / "first_hour.ipynb", as_version=4)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_first_hour_notebook_runs_and_shows_its_figures(tmp_path):
  notebook = nbformat.read(EXAMPLES / "first_hour.ipynb", as_version=4)
  # The kernel inherits this process's environment: conftest's isolated jaxviz cache.
  client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600,
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error

  outputs = [output for cell in notebook.cells if cell.cell_type == "code"
             for output in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  pngs = [base64.b64decode(o.data["image/png"]) for o in outputs
          if o.output_type == "display_data" and "image/png" in o.get("data", {})]
  # show(images), show(probe), show(probe, renders=...), show(comparison)
  assert len(pngs) == 4
  for png in pngs:
    assert png.startswith(PNG_SIGNATURE)
    assert min(Image.open(io.BytesIO(png)).size) > 100
  # show() returns None in a notebook, so no cell echoes a Figure's repr as well.
  texts = " ".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
  assert "Figure(" not in texts and "<Figure" not in texts
  stderr = " ".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
  assert "RANDOM" in stderr  # the notebook's results are said to be untrained

  saved = tmp_path / "compare.png"
  assert saved.read_bytes().startswith(PNG_SIGNATURE)
  with Image.open(saved) as image:
    image.verify()
  assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["compare.png"]
