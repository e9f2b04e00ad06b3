"""The atlas: a self-contained offline HTML page of a render directory.

`DIR/index.html` shows every rendered map's thumbnail with its index and final
objective, linking the full-size PNG; it sorts by index or by objective; and,
given a `jaxviz top-images --all-maps` table, shows each map's top photos
beside it. Everything it needs lies under DIR (thumbnails in `DIR/thumbs/`):
no network, no CDN, no external script.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from pathlib import Path

from PIL import Image

from jaxviz import fileio, store
from jaxviz.errors import JaxvizError

THUMB_SIDE = 160
PHOTO_SIDE = 72

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #fafafa; }}
header {{ margin-bottom: 1em; }}
#maps {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.map {{ background: white; border: 1px solid #ddd; padding: 6px; width: {thumb}px; }}
.map img.thumb {{ width: {thumb}px; height: {thumb}px; display: block; }}
.caption {{ font-size: 12px; margin-top: 4px; }}
.photos {{ display: flex; flex-wrap: wrap; gap: 2px; margin-top: 4px; }}
.photos img {{ width: {photo}px; height: {photo}px; object-fit: cover; }}
.random {{ color: #b00; font-weight: bold; }}
.dead {{ background: #b00; color: white; font-size: 11px; padding: 1px 4px; border-radius: 3px; }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>{summary}</p>
<p>Sort: <button id="by-index" type="button">by map index</button>
<button id="by-objective" type="button">by final objective</button></p>
</header>
<div id="maps">
{cards}
</div>
<script>
function sortMaps(key, descending) {{
  const box = document.getElementById("maps");
  const cards = Array.from(box.children);
  cards.sort((a, b) => (parseFloat(a.dataset[key]) - parseFloat(b.dataset[key])) *
                       (descending ? -1 : 1));
  cards.forEach((card) => box.appendChild(card));
}}
document.getElementById("by-index").addEventListener("click", () => sortMaps("index", false));
document.getElementById("by-objective").addEventListener("click",
                                                         () => sortMaps("objective", true));
</script>
</body>
</html>
"""


def _thumbnail(source: Path, target: Path, side: int) -> None:
  """Writes a side x side thumbnail unless an up-to-date one exists."""
  if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
    return
  with Image.open(source) as image:
    image = image.convert("RGB")
    image.thumbnail((side, side), Image.LANCZOS)
    with fileio.atomic_write(target) as tmp:
      image.save(tmp, format="PNG")


def _photo_thumbnail(photo: str, thumbs: Path) -> str | None:
  """A thumbnail of a top-images photo under thumbs/photos/; None if it is unreadable."""
  name = hashlib.sha1(photo.encode()).hexdigest()[:16] + ".png"
  target = thumbs / "photos" / name
  try:
    _thumbnail(Path(photo), target, PHOTO_SIDE)
  except (OSError, ValueError):
    return None
  return f"thumbs/photos/{name}"


def top_images_table(scores, target, weights_label: str, top: int) -> dict:
  """The `top-images --all-maps` table: every map's `top` photos (this module reads it).

  Format: {"layer", "layer_name", "pre_relu", "reads", "weights", "images" (count),
  "skipped": [path], "maps": {map: [{"image": path, "mean": score}, ...] best first}}.
  """
  return {**target.provenance(), "weights": weights_label,
          "images": len(scores.images), "skipped": [str(path) for path, _ in scores.skipped],
          "maps": {str(m): [{"image": str(path), "mean": value}
                            for path, value in scores.top_images(m, top)]
                   for m in range(target.layer.channels)}}


def read_top_images(path: str | os.PathLike) -> dict[int, list[dict]]:
  """A `top-images --all-maps` JSON table -> {map: [{"image", "mean"}, ...]}."""
  path = Path(path)
  try:
    table = json.loads(path.read_text())
    return {int(m): rows for m, rows in table["maps"].items()}
  except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
    raise JaxvizError(f"cannot read a top-images --all-maps table from {path}: {error}") from None


def build_atlas(out_dir: str | os.PathLike,
                top_images: dict[int, list[dict]] | None = None) -> Path:
  """Writes `out_dir/index.html` (and thumbnails) for the maps rendered there."""
  out_dir = Path(out_dir)
  records = store.read_records(out_dir)
  if not records:
    raise JaxvizError(f"{out_dir} holds no render record (render.json); render or sweep first")
  identity = records[0]["identity"]
  digest = records[0]["identity_hash"]
  objectives: dict[int, float] = {}
  dead: dict[int, int | None] = {}
  for record in records:
    if record.get("identity_hash") == digest:
      objectives.update({int(m): values[-1] for m, values in record["objectives"].items()})
      dead.update({int(m): scale for m, scale in record.get("dead_at_start", {}).items()})
  files = store.finished_maps(out_dir, digest)
  thumbs = out_dir / "thumbs"
  cards = []
  for map_index in sorted(files):
    name = files[map_index]
    _thumbnail(out_dir / name, thumbs / name, THUMB_SIDE)
    objective = objectives.get(map_index, float("nan"))
    photos = ""
    for row in (top_images or {}).get(map_index, []):
      src = _photo_thumbnail(row["image"], thumbs)
      if src:
        label = html.escape(f"{Path(row['image']).name}: {row['mean']:.3f}")
        photos += f'<img src="{src}" alt="{label}" title="{label}">'
    badge = ""
    if map_index in dead:
      fate = ("never came alive" if dead[map_index] is None
              else f"came alive at scale {dead[map_index]}")
      badge = (f' <span class="dead" title="objective 0 and no gradient at the start: only the '
               f'weight decay moved this image; {fate}">dead at start</span>')
    cards.append(
        f'<div class="map" data-index="{map_index}" data-objective="{objective:.6g}">'
        f'<a href="{html.escape(name)}"><img class="thumb" src="thumbs/{html.escape(name)}" '
        f'alt="map {map_index}"></a>'
        f'<div class="caption">fmap {map_index} &middot; objective {objective:.3f}{badge}</div>'
        + (f'<div class="photos">{photos}</div>' if photos else "") + "</div>")
  weights = identity["weights"]
  layer_name = records[0].get("layer_name", "")
  if identity.get("pre_relu"):
    reading = ", pre-ReLU"
  elif records[0].get("reads", layer_name) != layer_name:  # a conv layer, read after its ReLU
    reading = ", post-ReLU"
  else:
    reading = ""
  title = f"jaxviz atlas: layer {identity['layer']} ({layer_name}{reading}), {identity['arch']}"
  summary = (f"{len(files)} maps &middot; weights {html.escape(weights['label'])}"
             + (' <span class="random">(RANDOM, untrained)</span>' if weights["random"] else "")
             + f" &middot; recipe {html.escape(str(identity.get('recipe', {}).get('name', 'seed')))}"
             + f" &middot; seed {identity['seed']} &middot; {identity['dtype']}"
             + f" &middot; sides {records[0]['sides'][0]}&ndash;{records[0]['sides'][-1]} px"
             + (f" &middot; {len(dead)} dead at start" if dead else ""))
  page = PAGE.format(title=html.escape(title), summary=summary, cards="\n".join(cards),
                     thumb=THUMB_SIDE, photo=PHOTO_SIDE)
  index = out_dir / "index.html"
  with fileio.atomic_write(index) as tmp:
    tmp.write_text(page, encoding="utf-8")
  return index
