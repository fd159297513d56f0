"""Noise and class embeddings: shapes, closed forms, determinism."""

from __future__ import annotations

import math

import torch

from scorelab.nets import ClassEmbedding, ConditionEmbedding, FourierEmbedding, PositionalEmbedding


def test_fourier_shape_unit_pairs_and_seed():
    emb = FourierEmbedding(16)
    c = torch.linspace(-2, 2, 5)
    out = emb(c)
    assert out.shape == (5, 16)
    cos, sin = out[:, :8], out[:, 8:]
    torch.testing.assert_close(cos**2 + sin**2, torch.ones(5, 8))
    # closed form from the stored frequencies
    arg = 2 * math.pi * c[:, None] * emb.freqs
    torch.testing.assert_close(out, torch.cat([arg.cos(), arg.sin()], 1))
    assert torch.equal(FourierEmbedding(16).freqs, emb.freqs)  # same seed, same features
    assert not torch.equal(FourierEmbedding(16, seed=1).freqs, emb.freqs)
    assert "freqs" in emb.state_dict()  # saved with the weights
    assert 8 < emb.freqs.std() < 32  # scale 16


def test_fourier_scale_and_dtype():
    a, b = FourierEmbedding(8, scale=1.0), FourierEmbedding(8, scale=4.0)
    torch.testing.assert_close(b.freqs, 4 * a.freqs)
    out = a.double()(torch.tensor([0.3], dtype=torch.float64))
    assert out.dtype == torch.float64


def test_positional_closed_form():
    out = PositionalEmbedding(4)(torch.tensor([2.0, 0.0]))
    # frequencies 10000^(-i/2), i = 0, 1: 1 and 0.01
    expected = torch.tensor(
        [
            [math.cos(2.0), math.cos(0.02), math.sin(2.0), math.sin(0.02)],
            [1.0, 1.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(out, expected)
    assert PositionalEmbedding(6)(torch.tensor(0.5)).shape == (1, 6)  # 0-d -> one row


def test_class_embedding_null_token():
    emb = ClassEmbedding(3, 5)
    rows = emb(None, 4)
    assert rows.shape == (4, 5)
    torch.testing.assert_close(rows, emb.table.weight[3].expand(4, 5))
    assert emb.null_label == 3
    labels = torch.tensor([0, 2, 3])
    torch.testing.assert_close(emb(labels, 3), emb.table.weight[labels])


def test_condition_embedding_uses_labels():
    ce = ConditionEmbedding(8, "positional", num_classes=2)
    c = torch.zeros(2)
    with_labels = ce(c, torch.tensor([0, 1]))
    assert with_labels.shape == (2, 8)
    assert not torch.allclose(with_labels[0], with_labels[1])
    torch.testing.assert_close(ce(c, None), ce(c, torch.tensor([2, 2])))
