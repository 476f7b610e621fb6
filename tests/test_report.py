"""Report step: ground-truth scoring, figures (PNG + PDF), tables, and the self-contained HTML report."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from preimage.analysis.concepts.clustering import ClusterSettings, cluster_pool
from preimage.analysis.concepts.embeddings import (
    EmbeddedVocabulary,
    embedding_matrix,
    member_images,
    with_embeddings,
)
from preimage.analysis.concepts.groups import Group
from preimage.analysis.concepts.maps import group_map
from preimage.analysis.concepts.spurious import SpuriousSettings, score_group
from preimage.analysis.report.build import (
    FigureSettings,
    build_report,
    write_group_figures,
    write_run_figures,
)
from preimage.analysis.report.figures import GRID_PADDING, set_grid_image
from preimage.analysis.report.layout import (
    GROUP_FIGURES,
    RUN_FIGURES,
    ReportFigures,
)
from preimage.analysis.report.tables import sampler_table, to_latex, to_markdown, winner
from preimage.utils.io import write_parquet, write_png
from preimage.world.evaluation import evaluate, planted_pairs

TRUTH = pd.DataFrame({"class": ["square", "triangle"], "attribute": ["tag", "bg_colour"],
                      "value": ["present", "purple"], "strength": [0.95, 0.95]})


def _scores(rows: list[tuple[str, str, float, int, bool]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["class", "concept", "score", "rank", "flagged"])
    return table.assign(kind="class", extrinsic=True)


# --- evaluation against the planted shortcuts -----------------------------------------------------------
def test_ground_truth_scores_on_a_hand_made_case():
    found = _scores([
        ("square", "a tag", 0.6, 1, True), ("square", "a red shape", 0.1, 2, False),
        ("triangle", "a red shape", 0.3, 1, True), ("triangle", "a purple background", 0.25, 2, False),
        ("circle", "a tag", 0.05, 1, False),
    ])
    summary, pairs = evaluate({"method": found}, TRUTH)
    row = summary.iloc[0]
    assert (row.precision, row.recall, row.f1) == (0.5, 0.5, 0.5)
    assert (row.hit_at_1, row.mrr) == (0.5, 0.75)
    assert (row.flagged, row.planted, row.true_flags, row.false_flags, row.classes) == (2, 2, 1, 1, 3)
    assert set(zip(pairs["class"], pairs["concept"], pairs["planted"])) == {
        ("square", "a tag", True), ("triangle", "a purple background", True), ("triangle", "a red shape", False)}


def test_a_clean_model_without_flags_is_perfect_and_misses_count():
    clean = _scores([("circle", "a tag", 0.05, 1, False)])
    summary, _ = evaluate({"clean": clean}, TRUTH.iloc[:0])
    assert summary.iloc[0]["f1"] == 1.0 and summary.iloc[0]["false_flags"] == 0
    missed, _ = evaluate({"blind": clean}, TRUTH)  # planted classes never scored: misses, rank 0
    assert (missed.iloc[0]["recall"], missed.iloc[0]["f1"], missed.iloc[0]["mrr"]) == (0.0, 0.0, 0.0)
    absent = planted_pairs(TRUTH.assign(attribute=["tag", "tag"], value=["absent", "present"]))
    assert absent["concept"].tolist() == ["(no concept for tag=absent)", "a tag"]


def test_winner_prefers_f1_then_mrr():
    summary = pd.DataFrame({"method": ["a", "b", "c"], "f1": [0.5, 0.8, 0.8], "mrr": [1.0, 0.5, 0.9]})
    assert winner(summary) == "c"
    assert winner(summary.assign(mrr=0.5).iloc[1:]) == "tie"


# --- a small synthetic run on disk ----------------------------------------------------------------------
CONCEPTS = ("a square", "a circle", "a tag", "a red shape")
DIM = 8


def _vocabulary() -> EmbeddedVocabulary:
    axes = np.eye(DIM, dtype=np.float32)
    return EmbeddedVocabulary(CONCEPTS, CONCEPTS, axes[:4], ("square", "circle"), ("square", "circle"), axes[:2], 30.0)


def _embed(rng: np.random.Generator, n: int, tag: float) -> np.ndarray:
    x = rng.normal(0, 0.2, (n, DIM))
    x[:, 0] += 1.0
    x[:, 2] += 0.8 * (rng.random(n) < tag)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _write_set(directory, set_id: str, n: int, rng: np.random.Generator, sampler: str, scale: float) -> None:
    for i in range(n):
        write_png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), directory / f"members/{i:03d}.png")
    write_png(np.zeros((16, 16, 3), np.uint8), directory / "source.png")
    write_parquet(pd.DataFrame({"set_id": set_id, "accepted": np.arange(n) != 0,
                                "image": [f"members/{i:03d}.png" for i in range(n)]}), directory / "members.parquet")
    write_parquet(pd.DataFrame([{"set_id": set_id, "source_id": "src", "source_class": "square", "sampler": sampler,
                                 "guidance_scale": scale, "members": n, "accepted": n - 1,
                                 "acceptance_rate": (n - 1) / n,
                                 "diversity": rng.random(), "mean_lpips_to_source": rng.random(),
                                 "mean_l2_to_source": rng.random(), "seconds": 2.0}]), directory / "summary.parquet")


@pytest.fixture
def run(tmp_path):
    """Two sets of the class "square" whose members all carry a tag, a reference, and their concept tables."""
    rng = np.random.default_rng(0)
    sets = {"s1": ("guided", 1.0), "s2": ("rejection", float("nan"))}
    for set_id, (sampler, scale) in sets.items():
        _write_set(tmp_path / "sets" / set_id, set_id, 13, rng, sampler, scale)
    _write_set(tmp_path / "reference", "reference", 41, rng, "rejection", float("nan"))
    vocabulary = _vocabulary()
    rows = pd.concat([member_images(tmp_path / "sets" / s) for s in sets], ignore_index=True)
    embeddings = with_embeddings(rows, _embed(rng, len(rows), tag=1.0), "test")
    ref_rows = member_images(tmp_path / "reference")
    reference = with_embeddings(ref_rows, _embed(rng, len(ref_rows), tag=0.5), "test")
    group = Group("square", "class", "square", tuple(sets))
    assignments, clusters = cluster_pool(embeddings, vocabulary.text, vocabulary.concepts, 30.0, ClusterSettings())
    tagged = embedding_matrix(reference[reference["role"] == "member"])[:, 2] > 0.4
    predictions = pd.DataFrame({"image": reference.loc[reference["role"] == "member", "image"],
                                "prediction": np.where(tagged, "square", "circle")})  # a model that needs the tag
    scores = score_group(embeddings, reference, vocabulary, group, settings=SpuriousSettings(permutations=100),
                         reference_predictions=predictions)
    real = with_embeddings(pd.DataFrame({"image_id": ["r0", "r1", "r2"], "class_name": ["square", "square", "circle"]}),
                           _embed(rng, 3, tag=0.5), "test")
    embedding_map = group_map(embeddings, assignments, reference, points=50, real=real, core=group.core)
    paths = {name: tmp_path / "concepts" / f"{name}.parquet"
             for name in ("embeddings", "reference", "assignments", "clusters", "spurious", "map")}
    for name, table in zip(paths, (embeddings, reference, assignments, clusters, scores, embedding_map)):
        write_parquet(table, paths[name])
    return tmp_path, group, paths


def test_the_synthetic_run_flags_the_tag(run):
    _, _, paths = run
    scores = pd.read_parquet(paths["spurious"]).set_index("concept")
    assert scores.loc["a tag", "flagged"] and scores["flagged"].sum() == 1
    assert len(scores.loc["a tag", "evidence"]) == 6


def _write_figures(root, group: Group, paths: dict) -> tuple[list, list]:
    """Every figure of the synthetic run; returns the stems drawn as PNG + PDF and the PNG-only set grids."""
    figures = root / "figures"
    summary, pairs = evaluate({"invariant sets": pd.read_parquet(paths["spurious"])}, TRUTH)
    write_parquet(summary, root / "evaluation.parquet")
    write_parquet(pairs, root / "pairs.parquet")
    set_dirs = [root / "sets" / s for s in group.set_ids]
    out = figures / "groups" / "square"
    write_group_figures(paths["spurious"], paths["clusters"], paths["map"], set_dirs, group,
                        {name: out / name for name in ("enrichment", "clusters", "embedding")}, out / "sets",
                        FigureSettings(grid_members=8))
    stems = {name: figures / name for name in RUN_FIGURES}
    write_run_figures([d / "summary.parquet" for d in set_dirs], stems, figures / "samplers.tex",
                      figures / "samplers.md", root / "evaluation.parquet")
    return ([*(out / name for name in ("enrichment", "clusters", "embedding")),
             figures / "samplers", figures / "guidance", figures / "evaluation"],
            [out / "sets" / s for s in group.set_ids])


def test_figures_are_written_as_png_and_pdf_and_set_grids_as_png(run):
    root, group, paths = run
    figures, grids = _write_figures(root, group, paths)
    for stem in figures + grids:
        assert Image.open(f"{stem}.png").size[0] > 100
    for stem in figures:
        assert open(f"{stem}.pdf", "rb").read(4) == b"%PDF"
    assert not any(Path(f"{stem}.pdf").exists() for stem in grids)
    markdown, latex = (root / "figures" / "samplers.md").read_text(), (root / "figures" / "samplers.tex").read_text()
    assert "rejection" in markdown and "\\toprule" in latex


def test_a_set_grid_shows_the_source_and_every_member_pixel_for_pixel_enlarged():
    rng = np.random.default_rng(1)
    source, members = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    grid = set_grid_image(source, members, "set: 5 of 5 accepted members", columns=4, scale=3)
    top = grid.shape[0] - GRID_PADDING - 2 * 8 * 3  # the panels' row: two rows of four members, three times enlarged

    def enlarged(image: np.ndarray) -> np.ndarray:
        return image.repeat(3, axis=0).repeat(3, axis=1)

    np.testing.assert_array_equal(grid[top : top + 24, GRID_PADDING : GRID_PADDING + 24], enlarged(source))
    left = GRID_PADDING + 24 + 2 * GRID_PADDING
    for index, member in enumerate(members):
        row, column = divmod(index, 4)
        y, x = top + 24 * row, left + 24 * column
        np.testing.assert_array_equal(grid[y : y + 24, x : x + 24], enlarged(member))
    assert (grid[:top] < 128).any()  # the title and the panels' names
    with pytest.raises(ValueError, match="no source and no members"):
        set_grid_image(None, members[:0], "empty set")


def _report_figures(root, group: Group) -> ReportFigures:
    """The PNGs `_write_figures` drew, as the report takes them."""
    out = root / "figures" / "groups" / "square"
    return ReportFigures(groups={"square": {name: out / f"{name}.png" for name in GROUP_FIGURES}},
                         sets={"square": {s: out / "sets" / f"{s}.png" for s in group.set_ids}},
                         run={name: root / "figures" / f"{name}.png" for name in RUN_FIGURES})


def test_the_report_inlines_every_image(run):
    root, group, paths = run
    _write_figures(root, group, paths)
    report = build_report("test run", {"square": group}, [root / "sets" / s / "summary.parquet" for s in group.set_ids],
                          paths["spurious"], {"square": paths["clusters"]}, _report_figures(root, group),
                          root / "out/index.html",
                          root / "out/summary.md", (root / "evaluation.parquet", root / "pairs.parquet"),
                          _source_calls(root, group))
    html = (root / "out/index.html").read_text()
    sources = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert len(sources) >= 3 + len(group.set_ids) + 3  # group figures, set grids, run figures, evidence
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    assert "a tag" in html and "flagged" in html and report.winner == "invariant sets"
    markdown = (root / "out/summary.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((root / "out" / link).is_file() for link in links)
    tag = pd.read_parquet(paths["spurious"]).set_index("concept").loc["a tag"]
    assert (f"Flagged concepts: **a tag** (the model calls reference images showing it square {100 * tag.call_rate:.0f} "
            f"points more often than those without it; 90 % interval {100 * tag.call_rate_low:.0f} to "
            f"{100 * tag.call_rate_high:.0f})") in markdown
    assert f"{tag.call_rate:.3f} [{tag.call_rate_low:.2f}, {tag.call_rate_high:.2f}]" in html
    assert "Sources the model misclassifies" in html and "| s1 " in markdown.split("misclassifies", 1)[1]


def _source_calls(root, group: Group):
    """The model's call on each source of the group's sets: the first source called a circle."""
    sources = sorted({set_id.split("__")[0] for set_id in group.set_ids})
    calls = pd.DataFrame({"set_id": [f"{s}__label__guided" for s in sources], "source_id": sources,
                          "source_class": "square", "model_class": ["circle"] + ["square"] * (len(sources) - 1)})
    write_parquet(calls, root / "calls.parquet")
    return root / "calls.parquet"


def test_tables_render_as_markdown_and_latex():
    summaries = pd.DataFrame({"sampler": ["guided", "guided", "rejection"], "acceptance_rate": [0.5, 0.7, 0.2],
                              "diversity": [0.3, 0.3, 0.5], "mean_lpips_to_source": [0.2, 0.2, 0.4],
                              "mean_l2_to_source": [0.1, 0.1, 0.3], "seconds": [10.0, 10.0, 5.0],
                              "accepted": [5, 7, 2]})
    table = sampler_table(summaries)
    assert table.set_index("sampler").loc["guided", "acceptance_rate"] == pytest.approx(0.6)
    assert table.set_index("sampler").loc["rejection", "seconds_per_accepted"] == pytest.approx(2.5)
    assert "| guided" in to_markdown(table) and "rejection" in to_latex(table)
    with pytest.raises(ValueError, match="lack column"):
        sampler_table(summaries.drop(columns="diversity"))
