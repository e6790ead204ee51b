"""Recipes: a model, some data sets and an ordered list of steps, run into one folder.

A recipe is plain data (YAML, see ``recipes/``); :func:`run_recipe` resolves the model, makes or
finds the data, runs each step (artifact -> new artifact in its own folder; a measure listed
among the steps measures the latest artifact), measures every artifact with the report's
measures (``eval`` on each eval set, ``profile`` against the original, alternately in one run),
and writes ``report.md`` / ``report.json`` / ``manifest.json``. A re-run with the same recipe
resumes: steps whose output is complete and whose config is unchanged are not run again.

Step kinds (:mod:`xcompress.pipeline.steps`): :class:`Step` (``quantize``, ``export``,
``train``), :class:`Measure` (``eval``, ``profile``) and :class:`CandidateStep` (a search:
propose / tell, keeps a Pareto set).

Example:
    >>> from xcompress.pipeline import load_recipe, run_recipe
    >>> summary = run_recipe(load_recipe("recipes/demo.yaml"), "runs/demo")   # doctest: +SKIP
"""

from xcompress.pipeline.recipe import DataSpec, Recipe, ReportSpec, StepSpec, load_recipe
from xcompress.pipeline.runner import RunSummary, run_recipe
from xcompress.pipeline.steps import (
    Candidate,
    CandidateResult,
    CandidateStep,
    Measure,
    Measurement,
    Objective,
    RecipeStep,
    Step,
    get_step,
    pareto_front,
    register_step,
    run_candidates,
    step_names,
)

__all__ = [
    "Candidate",
    "CandidateResult",
    "CandidateStep",
    "DataSpec",
    "Measure",
    "Measurement",
    "Objective",
    "Recipe",
    "RecipeStep",
    "ReportSpec",
    "RunSummary",
    "Step",
    "StepSpec",
    "get_step",
    "load_recipe",
    "pareto_front",
    "register_step",
    "run_candidates",
    "run_recipe",
    "step_names",
]
