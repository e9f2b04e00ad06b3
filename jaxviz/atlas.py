"""The atlas: a self-contained offline HTML page of a render directory.

`DIR/index.html` shows every rendered map's thumbnail with its index and final
objective, linking the full-size PNG; it sorts by index or by objective; and,
given a `jaxviz top-images --all-maps` table, shows each map's top photos
beside it. Where `jaxviz trust` has run, each card also shows its trust
numbers (`jaxviz.trust`), a small profile of the path similarity over the
taps, and badges on renders off the photos' path or fragile to shifts; the page
sorts by them too.
The photos a trust block names are shown by name only: a record's paths are
never read. Everything it needs lies under DIR (thumbnails in `DIR/thumbs/`):
no network, no CDN, no external script.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
from pathlib import Path

from PIL import Image

from jaxviz import fileio, store
from jaxviz.errors import JaxvizError
from jaxviz.reprs import ShortRepr

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
.offpath, .fragile {{ background: #d60; color: white; font-size: 11px; padding: 1px 4px; border-radius: 3px; }}
.trust {{ font-size: 11px; color: #333; margin-top: 2px; }}
.profile {{ display: block; margin-top: 2px; }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>{summary}</p>
<p>Sort: <button id="by-index" type="button">by map index</button>
<button id="by-objective" type="button">by final objective</button>{trust_buttons}</p>
</header>
<div id="maps">
{cards}
</div>
<script>
function sortMaps(key, descending) {{
  const box = document.getElementById("maps");
  const cards = Array.from(box.children);
  // A map without the number (no trust numbers, no reference) goes last.
  const value = (card) => {{
    const number = parseFloat(card.dataset[key]);
    return isNaN(number) ? -Infinity : (descending ? number : -number);
  }};
  cards.sort((a, b) => (value(a) === value(b) ? 0 : (value(a) < value(b) ? 1 : -1)));
  cards.forEach((card) => box.appendChild(card));
}}
document.getElementById("by-index").addEventListener("click", () => sortMaps("index", false));
document.getElementById("by-objective").addEventListener("click",
                                                         () => sortMaps("objective", true));
for (const [key, descending] of {trust_sorts}) {{
  document.getElementById("by-" + key).addEventListener("click",
                                                        () => sortMaps(key, descending));
}}
</script>
</body>
</html>
"""


def _thumbnail(source: Path, target: Path, side: int) -> None:
  """Writes a side x side thumbnail unless an up-to-date one exists; the source is read
  as any untrusted image is (`fileio.read_image`: size-checked before decoding)."""
  if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
    return
  image = Image.fromarray(fileio.to_uint8(fileio.read_image(source)), "RGB")
  image.thumbnail((side, side), Image.LANCZOS)
  with fileio.atomic_write(target) as tmp:
    image.save(tmp, format="PNG")


def _photo_thumbnail(photo: str, thumbs: Path) -> str | None:
  """A thumbnail of a top-images photo under thumbs/photos/ (named by a hash of its
  path, never by the path); None if it is unreadable or not an image."""
  name = hashlib.sha1(photo.encode("utf-8", "surrogateescape")).hexdigest()[:16] + ".png"
  target = thumbs / "photos" / name
  try:
    _thumbnail(Path(photo), target, PHOTO_SIDE)
  except (OSError, JaxvizError):
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


# A table from elsewhere is untrusted: it is read only if it is what `top_images_table`
# writes, within these bounds.
MAX_TABLE_BYTES = 64 * 2**20
MAX_PHOTOS_PER_MAP = 100


def _table_problem(table) -> str | None:
  """Why `table` is not a top-images table, or None."""
  if not isinstance(table, dict) or not isinstance(table.get("maps"), dict):
    return "it has no \"maps\" object"
  for key, rows in table["maps"].items():
    if not (isinstance(key, str) and key.isdigit() and len(key) <= 7):
      return f"map {fileio.display(key)!r} is not a map index"
    if not isinstance(rows, list) or len(rows) > MAX_PHOTOS_PER_MAP:
      return f"map {key}'s photos are not a list of at most {MAX_PHOTOS_PER_MAP}"
    for row in rows:
      if not (isinstance(row, dict) and isinstance(row.get("image"), str)
              and isinstance(row.get("mean"), (int, float))
              and not isinstance(row.get("mean"), bool)):
        return f"map {key} has a photo that is not {{\"image\": path, \"mean\": number}}"
  return None


def read_top_images(path: str | os.PathLike) -> dict[int, list[dict]]:
  """A `top-images --all-maps` JSON table -> {map: [{"image", "mean"}, ...]}.

  Raises:
    JaxvizError: naming the file, when it cannot be read or is not such a table.
  """
  path = Path(path)
  where = fileio.display(path)
  try:
    if path.stat().st_size > MAX_TABLE_BYTES:
      raise JaxvizError(f"{where} is larger than {MAX_TABLE_BYTES >> 20} MiB; not a "
                        "top-images table")
    table = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
    reason = getattr(error, "strerror", None) or (str(error).splitlines() or [""])[0]
    raise JaxvizError(f"cannot read a top-images --all-maps table from {where}: "
                      f"{fileio.display(reason)}") from None
  problem = _table_problem(table)
  if problem:
    raise JaxvizError(f"{where} is not a top-images --all-maps table: {problem}")
  return {int(m): rows for m, rows in table["maps"].items()}


PROFILE_WIDTH, PROFILE_HEIGHT = 150, 28
# The trust numbers the page sorts by: (its data attribute and button "by-<key>", the
# entry's field, the button's label, highest first).
TRUST_SORTS = (("similarity", "similarity", "by path similarity", False),
               ("ratio", "ratio", "by ratio to the best photo", True),
               ("percentile", "percentile", "by percentile", True),
               ("shift", "shift_robustness", "by shift robustness", False))


def _profile_svg(profile: list[dict], off_path: float) -> str:
  """A map's path similarity over the taps as a small inline SVG: a point per tap with a
  reference (y from -1 to 1.5), the 0 and 1 references as lines, `off_path` dashed."""
  top, bottom = 1.5, -1.0
  y = lambda value: PROFILE_HEIGHT * (top - min(max(value, bottom), top)) / (top - bottom)
  step = PROFILE_WIDTH / max(len(profile) - 1, 1)
  points = [f"{i * step:.1f},{y(tap['similarity']):.1f}" for i, tap in enumerate(profile)
            if tap["similarity"] is not None]
  lines = "".join(f'<line x1="0" x2="{PROFILE_WIDTH}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
                  f'stroke="#bbb" stroke-width="1"{dash}/>'
                  for level, dash in ((0.0, ""), (1.0, ""), (off_path, ' stroke-dasharray="2,2"')))
  taps = html.escape(" > ".join(fileio.display(tap["tap"]) for tap in profile))
  return (f'<svg class="profile" width="{PROFILE_WIDTH}" height="{PROFILE_HEIGHT}" '
          f'role="img" aria-label="path similarity by layer"><title>path similarity by '
          f'layer: {taps} (lines at 0 and 1, dashed at {off_path:g})</title>{lines}'
          f'<polyline fill="none" stroke="#06c" stroke-width="1.5" points="{" ".join(points)}"/>'
          "</svg>")


def _trust_html(entry: dict | None, block: dict | None) -> tuple[str, str, str]:
  """(badge, caption lines, data attributes) of a map's entry in a checked record's trust
  `block` (its photos' names only: a record's paths are never read)."""
  if entry is None:
    return "", "", ""
  shown = lambda name: "n/a" if entry[name] is None else f"{entry[name]:.2f}"  # noqa: E731
  top = html.escape(", ".join(fileio.display(Path(block["photos"][i]["path"]).name)
                              for i in entry["top_photos"]))
  badge = (' <span class="offpath" title="its activations on the way to this layer are less '
           'like those of its top photos than its threshold allows">off the photos&#39; '
           'path</span>' if entry["off_path"] else "")
  badge += (' <span class="fragile" title="moved by a few pixels, it loses most of its '
            'activation">fragile</span>' if entry["fragile"] else "")
  caption = (f'<div class="trust" title="top photos: {top}">ratio to best photo '
             f'{shown("ratio")} &middot; percentile {entry["percentile"]:.0f}'
             + (" &middot; super-stimulus" if entry["super_stimulus"] else "")
             + f'<br>path similarity {shown("similarity")} &middot; shift robustness '
             f'{shown("shift_robustness")}</div>'
             + _profile_svg(entry["profile"], float(block["off_path_below"])))
  data = "".join(f' data-{key}="{"nan" if entry[field] is None else format(entry[field], ".6g")}"'
                 for key, field, _, _ in TRUST_SORTS)
  return badge, caption, data


def _own_dir(path: Path) -> Path:
  """A folder the atlas writes into inside the render directory: refused if it is a
  link (a shared directory could point it anywhere)."""
  if path.is_symlink():
    raise JaxvizError(f"{fileio.display(path)} is a symbolic link; the atlas writes only "
                      "inside the render directory")
  return path


def build_atlas(out_dir: str | os.PathLike,
                top_images: dict[int, list[dict]] | None = None) -> "AtlasResult":
  """Writes `out_dir/index.html` (and thumbnails) for the maps rendered there.

  Every record is checked (`store.read_record`); every value that reaches the
  page is escaped; only the maps' own PNGs inside `out_dir` are read, and only
  intact ones (`store.check_maps`): the others are counted as damaged.
  """
  out_dir = Path(out_dir)
  records = store.read_records(out_dir)
  if not records:
    raise JaxvizError(f"{fileio.display(out_dir)} holds no render record (render.json); "
                      "render or sweep first")
  first = records[0]
  identity, digest = first["identity"], first["identity_hash"]
  objectives: dict[int, float] = {}
  dead: dict[int, int | None] = {}
  trusted: dict[int, tuple[dict, dict]] = {}  # map: (entry, its record's trust block)
  for record in records:
    if record["identity_hash"] == digest:
      objectives.update({int(m): values[-1] for m, values in record["objectives"].items()})
      dead.update({int(m): scale for m, scale in record["dead_at_start"].items()})
      trusted.update(store.trust_entries(record))
  blocks = {id(block): block for _, block in trusted.values()}
  photo_sets = {len(block["photos"]) for block in blocks.values()}
  k_values = {int(block["k"]) for block in blocks.values()}
  files, damaged = store.check_maps(out_dir, digest)
  thumbs = _own_dir(out_dir / "thumbs")
  if top_images:
    _own_dir(thumbs / "photos")
  cards = []
  for map_index in sorted(files):
    name = files[map_index]
    _thumbnail(out_dir / name, thumbs / name, THUMB_SIDE)
    objective = objectives.get(map_index)
    objective = float("nan") if objective is None else float(objective)
    photos = ""
    for row in (top_images or {}).get(map_index, []):
      src = _photo_thumbnail(row["image"], thumbs)
      if src:
        label = html.escape(fileio.display(f"{Path(row['image']).name}: {row['mean']:.3f}"))
        photos += f'<img src="{src}" alt="{label}" title="{label}">'
    badge = ""
    if map_index in dead:
      fate = ("never came alive" if dead[map_index] is None
              else f"came alive at scale {int(dead[map_index])}")
      badge = (f' <span class="dead" title="objective 0 and no gradient at the start: only the '
               f'weight decay moved this image; {fate}">dead at start</span>')
    off_path, trust_caption, trust_data = _trust_html(*trusted.get(map_index, (None, None)))
    cards.append(
        f'<div class="map" data-index="{map_index}" data-objective="{objective:.6g}"{trust_data}>'
        f'<a href="{html.escape(name)}"><img class="thumb" src="thumbs/{html.escape(name)}" '
        f'alt="map {map_index}"></a>'
        f'<div class="caption">fmap {map_index} &middot; objective {objective:.3f}{badge}'
        f'{off_path}</div>{trust_caption}'
        + (f'<div class="photos">{photos}</div>' if photos else "") + "</div>")
  weights = identity["weights"]
  layer_name = first.get("layer_name", "")
  if identity.get("pre_relu"):
    reading = ", pre-ReLU"
  elif first.get("reads", layer_name) != layer_name:  # a conv layer, read after its ReLU
    reading = ", post-ReLU"
  else:
    reading = ""
  recipe = identity.get("recipe")
  recipe_name = recipe.get("name", "seed") if isinstance(recipe, dict) else "seed"
  text = lambda value: html.escape(fileio.display(value))
  title = f"jaxviz atlas: layer {identity['layer']} ({layer_name}{reading}), {identity['arch']}"
  summary = (f"{len(files)} maps &middot; weights {text(weights['label'])}"
             + (' <span class="random">(RANDOM, untrained)</span>' if weights["random"] else "")
             + f" &middot; recipe {text(recipe_name)}"
             + f" &middot; seed {int(identity['seed'])} &middot; {text(identity['dtype'])}"
             + f" &middot; sides {int(first['sides'][0])}&ndash;{int(first['sides'][-1])} px"
             + (f" &middot; {len(dead)} dead at start" if dead else "")
             + (f" &middot; trust numbers of {len(trusted)} maps against "
                f"{'/'.join(map(str, sorted(photo_sets)))} photos (k = "
                f"{'/'.join(map(str, sorted(k_values)))}): "
                f"{sum(entry['off_path'] for entry, _ in trusted.values())} off the photos' "
                f"path, {sum(entry['fragile'] for entry, _ in trusted.values())} fragile"
                if trusted else "")
             + (f' &middot; <span class="random">{len(damaged)} missing or damaged (rerun the '
                'command that made them to render them again)</span>' if damaged else ""))
  sorts = TRUST_SORTS if trusted else ()
  trust_buttons = "".join(f'\n<button id="by-{key}" type="button">{label}</button>'
                          for key, _, label, _ in sorts)
  page = PAGE.format(title=text(title), summary=summary, cards="\n".join(cards),
                     thumb=THUMB_SIDE, photo=PHOTO_SIDE, trust_buttons=trust_buttons,
                     trust_sorts=json.dumps([[key, descending]
                                             for key, _, _, descending in sorts]))
  index = out_dir / "index.html"
  with fileio.atomic_write(index) as tmp:
    tmp.write_text(page, encoding="utf-8")
  return AtlasResult(index, len(files), damaged)


@dataclasses.dataclass(frozen=True, repr=False)
class AtlasResult(ShortRepr):
  """What `build_atlas` wrote.

  Attributes:
    index: the page, DIR/index.html.
    maps: the maps shown.
    damaged: {map: file} for maps recorded but missing or damaged on disk (not shown).
  """

  index: Path
  maps: int
  damaged: dict[int, str]
