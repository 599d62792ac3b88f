"""A student who writes attention as in "Attention Is All You Need", with a boolean or additive mask
and a causal option, and its backward through the softmax by hand."""
import math

import numpy as np


def stable_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention_probs(query, key, attn_mask, is_causal):
    L, S = query.shape[-2], key.shape[-2]
    scores = query @ key.swapaxes(-1, -2) / math.sqrt(query.shape[-1])
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), dtype=bool)), scores, -np.inf)
    if attn_mask is not None:
        if attn_mask.dtype == bool:
            scores = np.where(attn_mask, scores, -np.inf)  # True means "may attend"
        else:
            scores = scores + attn_mask
    return stable_softmax(scores)


def scaled_dot_product_attention(query, key, value, attn_mask=None, is_causal=False):
    return attention_probs(query, key, attn_mask, is_causal) @ value


def scaled_dot_product_attention_backward(grad_output, query, key, value, attn_mask=None, is_causal=False):
    p = attention_probs(query, key, attn_mask, is_causal)
    grad_value = p.swapaxes(-1, -2) @ grad_output
    grad_p = grad_output @ value.swapaxes(-1, -2)
    grad_scores = p * (grad_p - (p * grad_p).sum(axis=-1, keepdims=True))
    scale = 1 / math.sqrt(query.shape[-1])
    grad_query = grad_scores @ key * scale
    grad_key = grad_scores.swapaxes(-1, -2) @ query * scale
    return grad_query, grad_key, grad_value
