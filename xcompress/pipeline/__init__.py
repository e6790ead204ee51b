"""Recipes: a model, some data sets and an ordered list of steps, run into one folder.

A recipe is plain data (YAML, see ``recipes/``); :func:`run_recipe` resolves the model, makes or
finds the data, runs each step (artifact -> new artifact in its own folder), evaluates every
artifact on the eval sets, times each against the original alternately in one run, and writes
``report.md`` / ``report.json`` / ``manifest.json``. A re-run with the same recipe resumes:
steps whose output is complete and whose config is unchanged are not run again.

Example:
    >>> from xcompress.pipeline import load_recipe, run_recipe
    >>> summary = run_recipe(load_recipe("recipes/demo.yaml"), "runs/demo")   # doctest: +SKIP
"""

from xcompress.pipeline.recipe import DataSpec, Recipe, ReportSpec, StepSpec, load_recipe
from xcompress.pipeline.runner import RunSummary, run_recipe
from xcompress.pipeline.steps import Step, get_step, register_step, step_names

__all__ = [
    "DataSpec",
    "Recipe",
    "ReportSpec",
    "RunSummary",
    "Step",
    "StepSpec",
    "get_step",
    "load_recipe",
    "register_step",
    "run_recipe",
    "step_names",
]
