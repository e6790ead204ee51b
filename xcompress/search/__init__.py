"""Architecture search: an Optuna ask/tell loop over a model's width/depth space, measured
against a target's latency and accuracy budgets, stored so that a re-run resumes."""
