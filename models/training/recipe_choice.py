"""Which recipe would a new source get if recipes were chosen without it? The recipe ablations
(models/reports/ablations.json) grouped into recipes, each run at another seed or machine one more
sample of the recipe, and for each held-out source the recipe with the best ranking of the *other*
held-out sources: a choice that rewards new sources without scoring the one it is judged on.

Read by models/training/card.py; the runs come from `python -m models.training.ablations`.
"""

from __future__ import annotations

import numpy as np

# Runs of one recipe at another seed or on another machine: the spread a comparison must beat.
REPEATS = {
    "ours_rerun": "ours",
    "ours2": "ours",
    "ours3": "ours",
    "longproto2": "longproto",
    "hybrid2": "hybrid",
    "shipped": "hybrid",  # the hybrid trained as one fold (train.py since 2026-12-04), not scored from two
    "balanced2": "balanced",
    "freqmix2": "freqmix",
    "gunfire2": "gunfire",
    "smooth2": "smooth",
    "shipped_gunfire2": "shipped_gunfire",
    "shipped_gunfire3": "shipped_gunfire",
}


def recipe_aucs(report: dict) -> dict[str, dict[str, list[float]]]:
    """Held-out fused clip AUC per recipe and source, one value per run (REPEATS grouped), for the
    recipes run on every source that has other clips to rank its shots against."""
    ranked = {source: v for source, v in report.items() if any("ranking" in r for r in v.values())}
    aucs: dict[str, dict[str, list[float]]] = {}
    for source, variants in ranked.items():
        for name, r in variants.items():
            if "ranking" in r:
                runs = aucs.setdefault(REPEATS.get(name, name), {}).setdefault(source, [])
                runs.append(r["ranking"]["fused"]["clip_auc"])
    return {recipe: by_source for recipe, by_source in aucs.items() if by_source.keys() == ranked.keys()}


def chosen_on_other_sources(aucs: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """Per held-out source: every recipe's mean fused AUC on the other held-out sources (each
    source's runs averaged first) and the recipe with the highest."""
    sources = list(next(iter(aucs.values())))
    choices = {}
    for held in sources:
        on_others = {
            recipe: float(np.mean([np.mean(by_source[s]) for s in sources if s != held]))
            for recipe, by_source in aucs.items()
        }
        choices[held] = {"chosen": max(on_others, key=on_others.__getitem__), "on_others": on_others}
    return choices
