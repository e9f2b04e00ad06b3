"""Trust numbers (`jaxviz.trust`) on a network built so that the answer is known.

The network (`network`, 32 px, two taps) sees colour and a 2 px checkerboard:
  t1 (8 channels): relu of R, G, B, R-G, G-B, B-R, and of a 2x2 checker filter's
      response and of its negative (summed over colours);
  t2 (5 channels):
    0 template (the honest control, and a render that is by construction a
      photo): per pixel, how close the image is to one photo (chelsea),
      relu(1 - |x - P|^2), highest at the photo itself. Its best photos are
      chelsea and cat, which scikit-image ships as the same photo: top photos
      that are alike by construction.
    1 fooling: the template plus a little checker energy. On photos, whose
      pixels vary smoothly at 32 px, the checker term is small and the
      template decides which photos excite it (the same top photos as unit 0);
      an optimised image excites it far more through a checkerboard, which no
      photo has: the render takes another processing path than the photos
      (Geirhos et al.'s fooling circuit without its classifier: here the two
      paths differ in what excites them, not by a switch);
    2-4 redness, greenness, brightness (so that t2's profile has a rank order);
    5 pixel-precise: how well the image's brightness matches a fixed random +-1
      pattern, pixel by pixel (one number, the same at every position). Its
      render is that pattern, which any shift decorrelates: fragile to shifts,
      where the template's render (a photo, smooth at this size) is not.
Photos: scikit-image's photos (colour and grey) at 32 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz import store, trust
from jaxviz.errors import JaxvizError
from jaxviz.optvis import models

SIDE = 32
# Those the scikit-image wheel holds (others need a download): colour, then grey.
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina",
               "hubble_deep_field", "colorwheel", "logo", "camera", "coins", "moon", "brick",
               "grass", "gravel", "cat")
TEMPLATE = "chelsea"
HONEST, FOOLING, PIXEL_PRECISE = 0, 1, 5
CHECKER_GAIN = 0.2
K = 2


def photos() -> dict[str, np.ndarray]:
  from skimage import data

  found = {}
  for name in PHOTO_NAMES:
    image = np.asarray(getattr(data, name)())
    image = np.dstack([image] * 3) if image.ndim == 2 else image[..., :3]
    resized = Image.fromarray(image.astype(np.uint8)).resize((SIDE, SIDE), Image.BOX)
    found[name] = np.asarray(resized, np.float32) / 255.0
  return found


def network(template: np.ndarray):
  import jax.numpy as jnp

  def features(params, x):
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    grey = x.sum(-1)
    checker = grey[:, :-1, :-1] - grey[:, 1:, :-1] - grey[:, :-1, 1:] + grey[:, 1:, 1:]
    checker = jnp.pad(checker, ((0, 0), (0, 1), (0, 1)))
    relu = lambda v: jnp.maximum(v, 0.0)  # noqa: E731
    t1 = jnp.stack([relu(r), relu(g), relu(b), relu(r - g), relu(g - b), relu(b - r),
                    relu(checker), relu(-checker)], -1)
    template = relu(1.0 - ((x - params["template"]) ** 2).sum(-1))
    checker_energy = t1[..., 6] + t1[..., 7]
    match = relu(((grey / 3 - 0.5) * params["pattern"]).mean(axis=(1, 2)))
    t2 = jnp.stack([template, template + CHECKER_GAIN * checker_energy, t1[..., 3], t1[..., 4],
                    grey / 3, jnp.broadcast_to(match[:, None, None], grey.shape)], -1)
    return {"t1": t1, "t2": t2}

  pattern = np.random.default_rng(0).choice([-1.0, 1.0], size=(SIDE, SIDE))
  return models.FunctionModel(features), {"template": jnp.asarray(template),
                                          "pattern": jnp.asarray(pattern)}


@pytest.fixture(scope="module")
def setup():
  found = photos()
  names = sorted(found)
  model, params = network(found[TEMPLATE])
  renders = jaxviz.render(model, params, jaxviz.objectives.Channel("t2"),
                          [HONEST, FOOLING, PIXEL_PRECISE],
                          schedule=jaxviz.Schedule(size0=SIDE, scales=1, steps=150, lr=0.05),
                          batch=3, progress=False)
  return model, params, names, np.stack([found[n] for n in names]), renders


def numbers(setup, photo_rows=None):
  model, params, names, photo_array, renders = setup
  return {m.map: m for m in trust.trust(model, params, renders,
                                        [HONEST, FOOLING, PIXEL_PRECISE], photo_array,
                                        ("t1", "t2"), k=K)}


def test_the_fooling_units_render_is_flagged_and_the_honest_ones_passes(setup):
  model, params, names, photo_array, _ = setup
  found = numbers(setup)
  # Both units rank the photos alike: on photos the fooling unit is the honest one.
  assert {names[i] for i in found[HONEST].top_photos} == {TEMPLATE, "cat"}
  assert found[FOOLING].top_photos == found[HONEST].top_photos
  assert found[FOOLING].off_path and found[FOOLING].similarity < trust.OFF_PATH - 0.3, found
  assert not found[HONEST].off_path and found[HONEST].similarity > 0.9, found
  # The path shows where: at t1 the fooling render is less like its top photos than
  # unrelated photos are, the honest render as alike as they are to each other.
  t1 = {unit: found[unit].profile[0] for unit in found}
  assert t1[FOOLING].render_top < t1[FOOLING].top_rest < t1[HONEST].render_top
  assert t1[HONEST].similarity > 0.9 and t1[FOOLING].similarity < 0


def test_the_fooling_render_is_a_super_stimulus_and_the_honest_one_a_photo(setup):
  found = numbers(setup)
  fooling, honest = found[FOOLING], found[HONEST]
  assert fooling.super_stimulus and fooling.percentile == 100.0 and fooling.ratio > 1.1
  assert not honest.super_stimulus and 0.95 < honest.ratio <= 1.0 and honest.percentile > 85


def test_shift_robustness_flags_the_pixel_precise_render_and_passes_the_photo_like_ones(setup):
  found = numbers(setup)
  precise, honest, fooling = found[PIXEL_PRECISE], found[HONEST], found[FOOLING]
  assert precise.fragile and precise.shift_robustness < 0.1, precise
  assert not honest.fragile and honest.shift_robustness > 0.9, honest
  # Another question than the path's: the fooling render is off the path, yet its
  # checker energy survives a move (either phase of the checkerboard excites it).
  assert fooling.off_path and not fooling.fragile and fooling.shift_robustness > 0.9, fooling
  # As photos are: every photo that excites the template keeps 0.95 of it when moved.
  model, params, names, photo_array, _ = setup
  objectives = trust.pooled_features(model, params, photo_array, ("t2",))["t2"][:, HONEST]
  measured = []
  for photo, objective in zip(photo_array, objectives):
    moved = trust.pooled_features(model, params, trust.shifted(photo, trust.shift_offsets(SIDE)),
                                  ("t2",))["t2"][:, HONEST]
    measured.append(trust.shift_numbers(objective, moved)[0])
  measured = [value for value in measured if value is not None]
  assert len(measured) >= len(PHOTO_NAMES) // 2 and min(measured) > 0.95, measured


def test_shifted_copies_are_scipys_mirrored_shifts():
  from scipy import ndimage

  image = np.random.default_rng(1).uniform(size=(12, 9, 3))
  offsets = trust.shift_offsets(9)
  assert offsets == ((1, 0), (0, 1), (-1, 0), (0, -1), (2, 0), (0, 2), (-2, 0), (0, -2))
  assert trust.far_shift(408) == 13 and trust.far_shift(96) == 3
  # numpy's "reflect" (the edge pixel not repeated) is scipy's "mirror"
  expected = [ndimage.shift(image, (down, right, 0), order=0, mode="mirror")
              for down, right in offsets]
  np.testing.assert_array_equal(trust.shifted(image, offsets), np.stack(expected))
  assert trust.shift_numbers(2.0, np.array([1.0, 0.5])) == (0.375, True)
  assert trust.shift_numbers(0.0, np.array([1.0])) == (None, False)


def test_spearman_and_ranks_against_scipy():
  from scipy import stats

  rng = np.random.default_rng(0)
  a = np.maximum(rng.normal(size=(4, 9)), 0)  # ties at 0, as post-ReLU means have
  b = np.maximum(rng.normal(size=(3, 9)), 0)
  expected = np.array([[stats.spearmanr(x, y).statistic for y in b] for x in a])
  np.testing.assert_allclose(trust.spearman(a, b), expected, atol=1e-12)
  np.testing.assert_allclose(trust.ranks(a), stats.rankdata(a, axis=1) - 1)


def test_activation_numbers():
  assert trust.activation_numbers(2.0, np.array([1.0, 4.0, 2.0, 0.5])) == (0.5, 62.5, False)
  assert trust.activation_numbers(8.0, np.array([1.0, 4.0])) == (2.0, 100.0, True)
  assert trust.activation_numbers(1.0, np.zeros(3))[0] is None


def test_k_must_leave_other_photos(setup):
  model, params, names, photo_array, renders = setup
  with pytest.raises(JaxvizError, match="k must be at least 2"):
    trust.trust(model, params, renders[:1], [0], photo_array[:3], ("t1", "t2"), k=3)


# `jaxviz trust` on VGG16 (random weights, a tiny render, scikit-image's photos).

TINY_RENDER = ["-l", "4", "-m", "0:3", "-w", "random", "--size0", "32", "--scales", "2",
               "--steps", "40"]


@pytest.fixture
def rendered(tmp_path, photo_files):
  """A small render directory (3 maps) and a folder of 19 photos: scikit-image's, and the
  suite's photo files (grey, RGBA)."""
  import shutil

  from skimage import data

  from conftest import run_cli

  folder = tmp_path / "photos"
  folder.mkdir()
  for path in photo_files.values():
    shutil.copy(path, folder)
  for name in PHOTO_NAMES:
    image = np.asarray(getattr(data, name)())
    Image.fromarray(image if image.ndim == 2 else image[..., :3]).save(folder / f"{name}.png")
  out = tmp_path / "renders"
  run_cli("render", *TINY_RENDER, "-o", out)
  return out, folder


def test_trust_adds_versioned_numbers_with_the_photo_sets_identity(rendered):
  import hashlib
  import json

  from conftest import run_cli

  out, folder = rendered
  report = json.loads(run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random",
                              "--json").stdout)
  assert [m["map"] for m in report["maps"]] == [0, 1, 2]
  assert any(m["similarity"] is not None for m in report["maps"])
  assert report["path"] == ["conv1_1", "conv1_2", "pool1"]
  record = json.loads((out / "render.json").read_text())["trust"]
  assert record["version"] == store.TRUST_VERSION and record["k"] == 2
  assert record["off_path_below"] == trust.OFF_PATH
  assert record["fragile_below"] == trust.FRAGILE_BELOW
  names = sorted(p.name for p in folder.iterdir())
  # paths within the folder: a shared render directory does not show where it lay
  assert sorted(p["path"] for p in record["photos"]) == names
  for photo in record["photos"]:
    assert photo["sha256"] == hashlib.sha256((folder / Path(photo["path"]).name)
                                             .read_bytes()).hexdigest()
  for entry in report["maps"]:
    stored = record["maps"][str(entry["map"])]
    assert stored["similarity"] == entry["similarity"] and len(stored["profile"]) == 3
    assert stored["shift_robustness"] == entry["shift_robustness"] > 0
    assert 0 <= stored["percentile"] <= 100 and stored["objective"] >= 0


def test_trust_refuses_other_weights_and_too_few_photos_in_one_line(rendered):
  from conftest import error_line, run_cli

  out, folder = rendered
  line = error_line(run_cli("trust", out, "--photos", folder, "-w", "random:1",
                            expect_exit=1))
  assert "was rendered with weights random (seed 0)" in line and "--weights" in line
  line = error_line(run_cli("trust", out, "--photos", folder, "--k", "30", "-w", "random",
                            expect_exit=1))
  assert "needs more than 30 photos" in line
  line = error_line(run_cli("trust", out, "--photos", folder, "--k", "1", "-w", "random",
                            expect_exit=1))
  assert "--k must be at least 2" in line


def test_a_malformed_trust_block_is_refused_and_a_rerender_drops_its_map(rendered):
  import json

  from conftest import error_line, run_cli

  out, folder = rendered
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  record_path = out / "render.json"
  good = json.loads(record_path.read_text())
  entry = good["trust"]["maps"]["0"]
  profile = entry["profile"]
  for breakage in ({"similarity": "1.0"}, {"top_photos": [99, 0]}, {"off_path": 1},
                   {"off_path": not entry["off_path"]},  # disagrees with its similarity
                   {"super_stimulus": not entry["super_stimulus"]}, {"percentile": 101},
                   {"top_photos": [0, 0]}, {"top_photos": [0, 1, 2]}, {"sha256": "x"},
                   {"objective": 10**400}, {"profile": profile[:-1]},
                   {"fragile": not entry["fragile"]}, {"shift_robustness": float("nan")},
                   {"profile": [{**profile[0], "tap": "elsewhere"}, *profile[1:]]}):
    bad = json.loads(json.dumps(good))
    bad["trust"]["maps"]["0"].update(breakage)
    record_path.write_text(json.dumps(bad))
    line = error_line(run_cli("atlas", out, expect_exit=1))
    assert "not a readable jaxviz render record (malformed trust" in line, (breakage, line)
  for edit in (lambda block: block["maps"]["0"].pop("ratio"),
               lambda block: block["maps"].update({"07": block["maps"]["0"]}),
               lambda block: block.update(version=True), lambda block: block.update(k=30),
               lambda block: block["maps"]["0"].pop("shift_robustness"),
               lambda block: block.pop("fragile_below")):
    bad = json.loads(json.dumps(good))
    edit(bad["trust"])
    record_path.write_text(json.dumps(bad))
    line = error_line(run_cli("atlas", out, expect_exit=1))
    assert "not a readable jaxviz render record (malformed trust" in line, line
    # info reads the PNG; a broken record beside it only means no trust numbers.
    assert "trust" not in json.loads(run_cli("info", out / "4_0.png", "--json").stdout)
  newer = json.loads(json.dumps(good))
  newer["trust"]["version"] = store.TRUST_VERSION + 1  # a later jaxviz's: left out, no error
  record_path.write_text(json.dumps(newer))
  run_cli("atlas", out)
  assert 'class="trust"' not in (out / "index.html").read_text()
  record_path.write_text(json.dumps(good))
  (out / "4_1.png").unlink()  # damaged: the next render renders it again
  run_cli("render", *TINY_RENDER, "-o", out)
  assert sorted(json.loads(record_path.read_text())["trust"]["maps"]) == ["0", "2"]


def test_the_atlas_shows_the_numbers_escaped_and_reads_no_photo_a_record_names(rendered):
  import json
  import shutil

  from conftest import run_cli

  out, folder = rendered
  shutil.copy(next(folder.iterdir()), folder / '<img src=x onerror=alert(1)>.png')
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  record = json.loads((out / "render.json").read_text())
  photos = [Path(photo["path"]).name for photo in record["trust"]["photos"]]
  odd = photos.index("<img src=x onerror=alert(1)>.png")
  for entry in record["trust"]["maps"].values():  # the odd name among every map's top photos
    entry["top_photos"] = [odd] + [i for i in entry["top_photos"] if i != odd][:1]
  record["trust"]["photos"][odd - 1]["path"] = "/etc/passwd"  # never read: shown by name only
  (out / "render.json").write_text(json.dumps(record))
  run_cli("atlas", out)
  page = (out / "index.html").read_text()
  entries = record["trust"]["maps"]
  assert page.count('class="trust"') == len(entries) == 3
  assert page.count('class="offpath"') == sum(e["off_path"] for e in entries.values())
  assert page.count('<svg class="profile"') == 3 and "by-similarity" in page
  assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.png" in page
  assert not (out / "thumbs" / "photos").exists()


@pytest.mark.skipif(
    (__import__("shutil").which("chromium") is None
     or not __import__("importlib").util.find_spec("playwright"))
    and not __import__("os").environ.get("JAXVIZ_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and playwright (.ci/run installs both and sets "
           "JAXVIZ_REQUIRE_BROWSER so this never skips in CI)")
def test_the_atlas_sorts_by_the_trust_numbers_in_chromium(rendered):
  import json
  import shutil

  from playwright.sync_api import sync_playwright

  from conftest import run_cli

  out, folder = rendered
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  run_cli("atlas", out)
  entries = json.loads((out / "render.json").read_text())["trust"]["maps"]
  problems = []
  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    order = {}
    for button in ("by-similarity", "by-ratio", "by-percentile", "by-shift"):
      page.click("#by-index")  # the sort is stable: ties keep the index order
      page.click(f"#{button}")
      order[button] = [int(i) for i in page.eval_on_selector_all(
          ".map", "els => els.map(e => e.dataset.index)")]
    browser.close()
  assert not problems, problems
  missing_last = lambda value, sign: (value is None, 0 if value is None else sign * value)  # noqa: E731
  assert order["by-similarity"] == sorted(
      map(int, entries), key=lambda m: missing_last(entries[str(m)]["similarity"], 1))
  assert order["by-ratio"] == sorted(
      map(int, entries), key=lambda m: missing_last(entries[str(m)]["ratio"], -1))
  assert order["by-percentile"] == sorted(
      map(int, entries), key=lambda m: (-entries[str(m)]["percentile"], m))
  assert order["by-shift"] == sorted(
      map(int, entries), key=lambda m: missing_last(entries[str(m)]["shift_robustness"], 1))


def test_render_and_sweep_take_photos_and_the_api_gives_the_same_numbers(rendered, tmp_path):
  import json

  from conftest import error_line, run_cli

  out, folder = rendered
  fresh = tmp_path / "with_photos"
  report = json.loads(run_cli("render", *TINY_RENDER, "-o", fresh, "--photos", folder, "--k",
                              "2", "--json").stdout)
  # --json is the record as written, trust block included.
  assert report == json.loads((fresh / "render.json").read_text())
  assert sorted(report["trust"]["maps"]) == ["0", "1", "2"] and report["trust"]["k"] == 2
  with pytest.warns(UserWarning, match="RANDOM"):
    found = jaxviz.trust_dir(fresh, folder, weights="random", k=2, progress=False)
  for result in found.maps:
    stored = report["trust"]["maps"][str(result.map)]
    assert stored["similarity"] == result.similarity and stored["ratio"] == result.ratio

  swept = tmp_path / "swept"
  run_cli("sweep", *TINY_RENDER, "-o", swept, "--photos", folder, "--k", "2")
  assert (swept / "index.html").read_text().count('class="trust"') == 3

  empty = tmp_path / "no_photos"
  empty.mkdir()
  line = error_line(run_cli("render", *TINY_RENDER, "-o", tmp_path / "never", "--photos", empty,
                            expect_exit=1))
  assert "no images in" in line and not (tmp_path / "never").exists()
  line = error_line(run_cli("sweep", *TINY_RENDER, "-o", tmp_path / "never", "--photos", folder,
                            "--process-index", "0", "--process-count", "2", expect_exit=1))
  assert "run `jaxviz trust DIR --photos FOLDER` once every process has finished" in line
  # --k alone would be ignored: refused before anything is rendered, as the API refuses k.
  for command in ("render", "sweep"):
    line = error_line(run_cli(command, *TINY_RENDER, "-o", tmp_path / "never", "--k", "3",
                              expect_exit=1))
    assert line == "error: --k counts the top photos a render is compared with: it needs photos"
  assert not (tmp_path / "never").exists()
  with pytest.warns(UserWarning, match="RANDOM"), \
       pytest.raises(JaxvizError, match="^k counts the top photos"):
    jaxviz.render_dir(tmp_path / "never", 4, [0], weights="random", k=3, progress=False)


def test_trust_holds_a_chunk_of_images_at_a_time_and_gives_the_same_numbers(rendered,
                                                                          monkeypatch):
  """Photos and renders go through the network TRUST_CHUNK at a time (only their pooled
  activations are kept), and the numbers do not depend on the chunking, with a photo in
  a subfolder and a file that is no image in the middle of a chunk."""
  from jaxviz.app import commands

  out, folder = rendered
  (folder / "sub").mkdir()
  (folder / "astronaut.png").rename(folder / "sub" / "astronaut.png")
  (folder / "coins_broken.png").write_bytes(b"not a png")
  with pytest.warns(UserWarning, match="RANDOM"):
    whole = jaxviz.trust_dir(out, folder, weights="random", k=2, progress=False)
  seen = []
  pooled = trust.pooled_features

  def watched(model, params, images, path, *args, **kwargs):
    seen.append((len(images), len(path)))
    return pooled(model, params, images, path, *args, **kwargs)

  monkeypatch.setattr(trust, "pooled_features", watched)
  monkeypatch.setattr(commands, "TRUST_CHUNK", 2)
  with pytest.warns(UserWarning, match="RANDOM"):
    chunked = jaxviz.trust_dir(out, folder, weights="random", k=2, progress=False)
  whole_path = [count for count, taps in seen if taps == len(chunked.path)]
  assert max(whole_path) == 2 and sum(whole_path) == len(chunked.photos) + len(chunked.maps)
  # and each render's shifted copies, at the rendered tap only, one render at a time
  assert [count for count, taps in seen if taps == 1] == [8] * len(chunked.maps)
  assert len(chunked.maps) == 3 and chunked.photos == whole.photos
  assert Path("sub/astronaut.png") in [path for path, _ in chunked.photos]
  assert [path for path, _ in chunked.skipped] == [Path("coins_broken.png")]
  for ours, reference in zip(chunked.maps, whole.maps):
    assert ours.map == reference.map and ours.top_photos == reference.top_photos
    np.testing.assert_allclose(
        [ours.objective, ours.ratio, ours.percentile, ours.shift_robustness],
        [reference.objective, reference.ratio, reference.percentile, reference.shift_robustness],
        rtol=1e-6)
    assert (ours.similarity is None) == (reference.similarity is None)
    if ours.similarity is not None:
      np.testing.assert_allclose(ours.similarity, reference.similarity, rtol=0, atol=1e-6)


def test_info_reports_a_renders_numbers_only_for_the_bytes_its_record_names(rendered, tmp_path):
  import json
  import shutil

  from conftest import run_cli

  out, folder = rendered
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  entry = json.loads((out / "render.json").read_text())["trust"]["maps"]["1"]
  shown = json.loads(run_cli("info", out / "4_1.png", "--json").stdout)["trust"]
  assert shown["similarity"] == entry["similarity"] and shown["photos"] == 19 and shown["k"] == 2
  assert "trust (against 19 photos, k = 2)" in run_cli("info", out / "4_1.png").stdout
  elsewhere = tmp_path / "copy"
  elsewhere.mkdir()
  shutil.copy(out / "4_2.png", elsewhere / "4_1.png")  # another map's bytes under this name
  shutil.copy(out / "render.json", elsewhere / "render.json")
  assert "trust" not in json.loads(run_cli("info", elsewhere / "4_1.png", "--json").stdout)


def test_a_fragile_render_is_badged_in_the_atlas_and_named_by_info(rendered):
  """A map whose render loses its activation when moved (a valid entry, written here:
  the fixture's renders are not fragile) gets the badge, the caption and info's note."""
  import json

  from conftest import run_cli

  out, folder = rendered
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  record = json.loads((out / "render.json").read_text())
  assert not any(entry["fragile"] for entry in record["trust"]["maps"].values())
  record["trust"]["maps"]["1"].update(shift_robustness=0.125, fragile=True)
  (out / "render.json").write_text(json.dumps(record))
  run_cli("atlas", out)
  page = (out / "index.html").read_text()
  assert page.count('class="fragile"') == 1 and "shift robustness 0.12" in page
  assert 'data-shift="0.125"' in page and "1 fragile" in page
  shown = run_cli("info", out / "4_1.png").stdout
  assert "shift robustness 0.12 (fragile)" in shown
  assert "(fragile)" not in run_cli("info", out / "4_0.png").stdout


def test_the_atlas_reads_each_records_numbers_against_its_own_photo_set(rendered):
  """Two records (two processes' shares) with different photo sets: each map's photo names
  come from its own record's block."""
  import json

  from conftest import run_cli

  out, folder = rendered
  run_cli("trust", out, "--photos", folder, "--k", "2", "-w", "random")
  record = json.loads((out / "render.json").read_text())
  other = json.loads(json.dumps(record))
  names = [Path(photo["path"]).name for photo in record["trust"]["photos"]]
  far = max(record["trust"]["maps"], key=lambda m: max(record["trust"]["maps"][m]["top_photos"]))
  assert max(record["trust"]["maps"][far]["top_photos"]) >= 3
  other["trust"]["photos"] = [{**photo, "path": f"other_{i}.png"}
                              for i, photo in enumerate(record["trust"]["photos"][:3])]
  kept = next(m for m in other["trust"]["maps"] if m != far)
  other["trust"]["maps"] = {kept: {**other["trust"]["maps"][kept], "top_photos": [0, 1]}}
  for key in list(other["files"]):  # this share holds only the kept map
    if key != kept:
      for table in ("files", "sha256", "objectives"):
        other[table].pop(key, None)
  (out / "render.p1.json").write_text(json.dumps(other))
  run_cli("atlas", out)
  page = (out / "index.html").read_text()
  far_names = ", ".join(names[i] for i in record["trust"]["maps"][far]["top_photos"])
  assert f"top photos: {far_names}" in page and "top photos: other_0.png, other_1.png" in page
