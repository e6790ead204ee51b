"""Losses: CTC, U-DML-style distillation for CTC models, DB and DB-map distillation.

PP-OCRv2's U-DML trains a student with a teacher by (a) the student's own CTC loss, (b) a
KL divergence between the two CTC posteriors *in both directions* and (c) an L2 loss between
their sequence features. With a frozen teacher (the original model) the same three terms
keep the fine-tuned student close to what it already knew while it learns the new data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ctc_loss(logits: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Mean CTC loss of ``logits`` ``[B, T, C]`` for label id lists (blank = 0)."""
    log_probs = logits.log_softmax(dim=2).transpose(0, 1)  # [T, B, C]
    b, t = logits.shape[0], logits.shape[1]
    flat = torch.tensor([i for seq in targets for i in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(seq) for seq in targets], dtype=torch.long)
    input_lengths = torch.full((b,), t, dtype=torch.long)
    return F.ctc_loss(
        log_probs, flat, input_lengths, target_lengths, blank=0, reduction="mean",
        zero_infinity=True,
    )  # fmt: skip


def symmetric_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``KL(t||s) + KL(s||t)`` between per-step class posteriors, mean over steps and batch."""
    ls = F.log_softmax(student / temperature, dim=-1)
    lt = F.log_softmax(teacher / temperature, dim=-1)
    ps, pt = ls.exp(), lt.exp()
    kl = (pt * (lt - ls)).sum(-1) + (ps * (ls - lt)).sum(-1)
    return kl.mean() * temperature**2


def feature_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between feature tensors of the same shape."""
    return F.mse_loss(student, teacher)


def dice_loss(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    inter = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + eps
    return 1 - 2.0 * inter / union


def balanced_bce(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, ratio: float = 3.0
) -> torch.Tensor:
    """BCE with hard-negative mining: all positives plus the ``ratio``× hardest negatives."""
    pos = (gt * mask).bool()
    neg = ((1 - gt) * mask).bool()
    n_pos = int(pos.sum())
    n_neg = min(int(neg.sum()), int(n_pos * ratio)) if n_pos else min(int(neg.sum()), 100)
    loss = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
    pos_loss = loss[pos].sum()
    neg_loss = loss[neg].topk(n_neg).values.sum() if n_neg else loss.new_zeros(())
    return (pos_loss + neg_loss) / (n_pos + n_neg + 1e-6)


def db_loss(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    """DB loss: balanced BCE on the shrink map + 10 × L1 on the threshold map (inside the
    border band) + dice on the approximate binary map (DB paper weights 1 / 10 / 1)."""
    shrink = balanced_bce(out["shrink"], target["shrink"], target["shrink_mask"])
    tmask = target["thresh_mask"]
    thresh = (torch.abs(out["thresh"] - target["thresh"]) * tmask).sum() / (tmask.sum() + 1e-6)
    binary = dice_loss(out["binary"], target["shrink"], target["shrink_mask"])
    return shrink + 10.0 * thresh + binary


def prob_map_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """DB probability-map distillation: BCE to the teacher's map plus dice on its >0.3 region."""
    bce = F.binary_cross_entropy(student.clamp(1e-6, 1 - 1e-6), teacher)
    return bce + dice_loss(student, (teacher > 0.3).float(), torch.ones_like(teacher))
