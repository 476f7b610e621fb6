"""Tables of a run as DataFrames, LaTeX and Markdown (pandas' writers; tabulate/jinja2 underneath)."""

from __future__ import annotations

import pandas as pd

SAMPLER_METRICS = {
    "acceptance_rate": "acceptance rate",
    "diversity": "diversity (LPIPS)",
    "mean_lpips_to_source": "LPIPS to source",
    "seconds_per_accepted": "seconds per accepted member",
}


def sampler_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Mean metrics over sets per objective and sampler (per sampler for summaries without `objective_name`):
    acceptance, diversity, distance to source, cost. An objective's samplers may differ from another's
    (`sets.sampler_overrides`), so a pipeline's samplers are compared objective by objective."""
    required = {"sampler", "acceptance_rate", "diversity", "mean_lpips_to_source", "mean_l2_to_source", "seconds",
                "accepted"}
    missing = sorted(required - set(summaries.columns))
    if missing:
        raise ValueError(f"set summaries lack column(s) {missing} needed for the sampler table")
    rows = summaries.rename(columns={"objective_name": "objective"})
    rows = rows.assign(seconds_per_accepted=rows["seconds"] / rows["accepted"].clip(lower=1))
    keys = ["objective", "sampler"] if "objective" in rows else ["sampler"]
    table = rows.groupby(keys).agg(
        sets=("sampler", "size"), acceptance_rate=("acceptance_rate", "mean"), diversity=("diversity", "mean"),
        mean_lpips_to_source=("mean_lpips_to_source", "mean"), mean_l2_to_source=("mean_l2_to_source", "mean"),
        seconds_per_accepted=("seconds_per_accepted", "mean"),
    )
    return table.reset_index()


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table."""
    return table.to_markdown(index=False, floatfmt=f".{digits}f") + "\n"


def to_latex(table: pd.DataFrame, digits: int = 3) -> str:
    """A booktabs LaTeX tabular, column names escaped."""
    return table.to_latex(index=False, float_format=f"%.{digits}f", escape=True)


def winner(summary: pd.DataFrame) -> str:
    """The method with the best F1, then the best mean reciprocal rank; "tie" if they are level."""
    ordered = summary.sort_values(["f1", "mrr"], ascending=False, na_position="last")
    if len(ordered) > 1 and tuple(ordered.iloc[0][["f1", "mrr"]]) == tuple(ordered.iloc[1][["f1", "mrr"]]):
        return "tie"
    return str(ordered.iloc[0]["method"])
