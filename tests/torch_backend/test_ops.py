"""ATen op coverage: each test compiles one function exercising a family of ops and compares with eager.

Functions return dicts of named results so a mismatch names the op. Inputs
include negative values, ties and edge values where the op's semantics care
(floor division, remainder, argmax ties, NaN in max).
"""

from __future__ import annotations

import pytest

from tests.torch_backend import F, check_against_eager, check_gradients, torch


def _randn(*shape, seed=0, dtype=None):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


def test_unary_math():
    def fn(x):
        positive = x.abs() + 0.5
        return {
            "exp": x.exp(), "log": positive.log(), "sqrt": positive.sqrt(), "rsqrt": positive.rsqrt(),
            "tanh": x.tanh(), "sigmoid": x.sigmoid(), "erf": torch.erf(x), "sin": x.sin(), "cos": x.cos(),
            "expm1": x.expm1(), "log1p": positive.log1p(), "log2": positive.log2(), "log10": positive.log10(),
            "floor": (x * 3).floor(), "ceil": (x * 3).ceil(), "round": (x * 3).round(), "trunc": (x * 3).trunc(),
            "sign": x.sign(), "abs": x.abs(), "neg": -x, "reciprocal": positive.reciprocal(),
            "atan": x.atan(), "atan2": torch.atan2(x, positive), "sinh": x.sinh(), "cosh": x.cosh(),
            "square": x.square(), "pow": positive.pow(2.5), "pow_tensor": positive.pow(x), "rpow": 2.0 ** x,
            "exp2": torch.exp2(x),
        }

    x = _randn(6, 7)
    check_against_eager(fn, x, rtol=2e-5, atol=2e-6)


def test_activations():
    def fn(x):
        return {
            "relu": F.relu(x), "leaky_relu": F.leaky_relu(x, 0.1), "elu": F.elu(x), "gelu": F.gelu(x),
            "gelu_tanh": F.gelu(x, approximate="tanh"), "silu": F.silu(x), "softplus": F.softplus(x),
            "mish": F.mish(x), "hardswish": F.hardswish(x), "hardtanh": F.hardtanh(x, -0.5, 0.5),
            "relu6": F.relu6(x * 4), "clamp": x.clamp(-0.3, 0.2), "clamp_min": x.clamp(min=0.1),
            "logsigmoid": F.logsigmoid(x), "selu": F.selu(x), "glu": F.glu(x, -1),
        }

    check_against_eager(fn, _randn(5, 8), rtol=2e-5, atol=2e-6)


def test_integer_and_mixed_arithmetic():
    def fn(a, b, x):
        return {
            "add": a + b, "sub": a - 2 * b, "mul": a * b, "true_div": a / b, "floor_div": a // b,
            "remainder": a % b, "fmod": torch.fmod(a, b), "float_floor_div": x // 0.7, "float_remainder": x % -0.7,
            "trunc_div": torch.div(a, b, rounding_mode="trunc"), "int_plus_float": a + 0.5, "int_times_x": a * x,
            "bitwise": (a & b) | (a ^ 3), "not": ~a, "bool_add": (a > 0) + (b > 0),
            "maximum": torch.maximum(a, b), "minimum": torch.minimum(x, x.flip(0)), "int_pow": a.pow(2),
        }

    a = torch.tensor([[-7, -3, 0, 3, 7], [5, -5, 9, -9, 1]])
    b = torch.tensor([[2, -2, 3, 2, -3], [-4, 4, 2, 3, 1]])
    x = _randn(2, 5)
    check_against_eager(fn, a, b, x)


def test_comparisons_and_logic():
    def fn(x, y, n):
        return {
            "eq": x == y, "ne": x != 0.5, "lt": x < y, "le": n <= 2, "gt": x > 0, "ge": n >= n.flip(0),
            "where": torch.where(x > y, x, y), "where_scalar": torch.where(x > 0, x, 0.0),
            "logical": torch.logical_and(x > 0, y > 0) ^ torch.logical_not(n > 1),
            "or": torch.logical_or(x > 1, n == 0),
            "isnan": torch.isnan(x / x), "isinf": torch.isinf(1.0 / (x - x)), "isfinite": torch.isfinite(1.0 / x),
            "masked_fill": x.masked_fill(y > 0, -1.0), "nan_to_num": torch.nan_to_num((x / 0.0), posinf=9.0),
            "int_vs_float": n > 1.5, "bool_sum": (x > 0).sum(),
        }

    x = _randn(4, 6, seed=1)
    y = _randn(4, 6, seed=2)
    x[0, 0] = 0.0
    n = torch.arange(24).reshape(4, 6) % 4
    check_against_eager(fn, x, y, n)


def test_reductions():
    def fn(x, n):
        values, indices = x.max(dim=1)
        low, low_at = x.min(dim=0, keepdim=True)
        return {
            "sum": x.sum(), "sum_dims": x.sum(dim=(0, 2), keepdim=True), "mean": x.mean(dim=-1),
            "amax": x.amax(dim=(1, 2)), "amin": x.amin(dim=0), "max": values, "argmax_of_max": indices,
            "min": low, "argmin_of_min": low_at, "argmax": n.argmax(dim=1), "argmin_flat": n.argmin(),
            "prod": (x * 0.5 + 1).prod(dim=1), "any": (x > 2).any(dim=1), "all": (x > -3).all(),
            "var": x.var(dim=1), "std": x.std(dim=(0, 1), unbiased=False), "var_mean": torch.var_mean(x, dim=2),
            "norm": torch.linalg.vector_norm(x, dim=-1), "norm1": x.norm(p=1), "norm_inf": x.norm(p=float("inf")),
            "logsumexp": torch.logsumexp(x, dim=1), "cumsum": x.cumsum(dim=1), "cumprod": (x * 0.1 + 1).cumprod(2),
            "int_sum": n.sum(dim=0), "int_mean_as_float": n.float().mean(), "count": (n == 1).sum(dim=1),
        }

    x = _randn(3, 4, 5, seed=3)
    # Ties: argmax/argmin must report the first of equal values.
    n = torch.tensor([[1, 3, 3, 0], [2, 2, 1, 2], [0, 0, 0, 0]])
    check_against_eager(fn, x, n, rtol=1e-5, atol=1e-5)


def test_max_propagates_nan_and_reports_its_index():
    def fn(x):
        values, indices = x.max(dim=1)
        return {"amax": x.amax(dim=1), "values": values, "indices": indices, "argmin": x.argmin(dim=1)}

    x = torch.tensor([[1.0, float("nan"), 3.0, float("nan")], [4.0, 2.0, 4.0, -1.0]])
    check_against_eager(fn, x)


def test_shape_ops():
    def fn(x, y):
        parts = torch.split(x, [1, 2], dim=1)
        return {
            "permute": x.permute(2, 0, 1) + 1, "transpose": x.transpose(0, 2) * 2, "view": x.reshape(9, 4) - 1,
            "expand": y.expand(3, 3, 4) + x[:, :1, :], "unsqueeze": y.unsqueeze(0).unsqueeze(-1) * 1.0,
            "squeeze": y.squeeze(0) + 0, "cat": torch.cat([x, x * 2], dim=1), "stack": torch.stack([x, -x], dim=-1),
            "split0": parts[0] + 0, "split1": parts[1] + 0, "chunk": torch.chunk(x, 2, dim=2)[1] + 0,
            "slice_step": x[:, ::2, 1:] + 0, "negative_slice": x[..., -3:-1] + 0, "select": x[1] + x[:, 0, :].sum(),
            "flip": x.flip(0, 2), "roll": torch.roll(x, 1, dims=2), "repeat": y.repeat(2, 1, 2),
            "pad": F.pad(x, (1, 2, 0, 1), value=0.5), "crop_pad": F.pad(x, (-1, 1)),
            "tril": torch.tril(x[0]), "triu": torch.triu(x[0], diagonal=1), "unbind": torch.unbind(x, 1)[2] + 0,
            "narrow": x.narrow(2, 1, 2) + 0, "t": x[0].t() + 0, "flatten": x.flatten(1) + 0,
        }

    x = _randn(3, 3, 4, seed=4)
    y = _randn(1, 3, 4, seed=5)
    check_against_eager(fn, x, y)


def test_factories_and_conversions():
    def fn(x):
        return {
            "zeros": torch.zeros(2, 3) + x.sum(), "ones_like": torch.ones_like(x), "full": torch.full((2, 2), 7.5),
            "full_like_int": torch.full_like(x, 3, dtype=torch.int32), "arange": torch.arange(2, 11, 3),
            "arange_float": torch.arange(0.0, 1.0, 0.1), "linspace": torch.linspace(-1, 1, 7),
            "eye": torch.eye(3), "to_double": x.double() * 3, "to_int": (x * 10).to(torch.int64),
            "to_bool": x.bool(), "to_half": x.half(), "new_zeros": x.new_zeros(4), "scalar": x + torch.tensor(2.0),
            "empty_filled": torch.empty(2, 2).fill_(3.0),
        }

    check_against_eager(fn, _randn(2, 3, seed=6))


def test_indexing():
    def fn(x, index, rows, mask_index):
        target = torch.zeros(4, 5)
        return {
            "gather": torch.gather(x, 1, index), "index_select": x.index_select(0, rows),
            "advanced": x[rows], "advanced_columns": x[:, rows], "advanced_pair": x[rows, rows.flip(0)],
            "advanced_split": x.reshape(2, 2, 5)[rows[1:] // 2, :, rows[:2] + 1],
            "negative_index": x[torch.tensor([-1, 0])],
            "scatter": target.scatter(1, index, x[:, :3]), "scatter_value": target.scatter(1, index, 2.5),
            "scatter_add": target.scatter_add(0, mask_index, x), "index_put": x.index_put((rows,), torch.ones(3, 5)),
            "index_put_accumulate": target.index_put((rows,), x[:3], accumulate=True),
            "index_add": target.index_add(0, rows, x[:3], alpha=2.0),
            "scatter_amax": target.scatter_reduce(1, index, x[:, :3], reduce="amax"),
        }

    x = _randn(4, 5, seed=7)
    index = torch.tensor([[0, 4, 4], [1, 1, 2], [3, 0, 2], [4, 4, 4]])
    rows = torch.tensor([2, 0, 2])
    mask_index = torch.tensor([[0, 1, 2, 3, 0], [3, 3, 3, 3, 3], [1, 0, 1, 0, 1], [2, 2, 0, 0, 1]])
    check_against_eager(fn, x, index, rows, mask_index)


def test_sorting_and_diagonals():
    def fn(x, ties):
        values, indices = torch.sort(x, dim=1)
        down, down_at = torch.sort(ties, dim=0, descending=True, stable=True)
        top, top_at = torch.topk(x, 3, dim=-1)
        low = torch.topk(x, 2, dim=0, largest=False).values
        return {
            "sort": values, "sort_indices": indices, "descending_ties": down, "descending_tie_indices": down_at,
            "argsort": torch.argsort(ties, dim=1, stable=True), "topk": top, "topk_indices": top_at, "bottom": low,
            "diagonal": torch.diagonal(x) + 0, "diagonal_offset": torch.diagonal(x, 2) + 0,
            "diagonal_below": torch.diagonal(x, -1) + 0, "diagonal_3d": torch.diagonal(x.reshape(2, 3, 4), 0, 0, 2) + 0,
        }

    x = _randn(6, 4, seed=42)
    x[1, 2] = float("nan")
    ties = torch.tensor([[3.0, 1.0, 3.0, 2.0], [1.0, 1.0, 0.0, 3.0], [3.0, 2.0, 3.0, 2.0]])
    check_against_eager(fn, x, ties)


def test_embedding_and_its_gradient():
    table = _randn(10, 4, seed=8)
    tokens = torch.tensor([[1, 3, 3], [9, 0, 1]])
    check_against_eager(lambda w, t: F.embedding(t, w) * 2, table, tokens)
    check_gradients(lambda w, t: F.embedding(t, w).tanh(), table, tokens)


def test_matrix_products():
    def fn(a, b, batch, bias, v):
        return {
            "mm": a @ b, "addmm": torch.addmm(bias, a, b, beta=0.5, alpha=2.0), "bmm": torch.bmm(batch, batch),
            "matmul_broadcast": batch @ a[:3, :3], "einsum": torch.einsum("bij,bjk->bik", batch, batch),
            "mv": a @ v, "dot": v.dot(v), "linear": F.linear(a, b.t(), bias[0]),
            "int_mm": (a > 0).long() @ (b > 0).long(),
        }

    a = _randn(5, 6, seed=9)
    b = _randn(6, 4, seed=10)
    check_against_eager(fn, a, b, _randn(2, 3, 3, seed=11), _randn(5, 4, seed=12), _randn(6, seed=13), rtol=1e-4)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 0, 1, 2), (2, 2, 2, 1), (3, 1, 1, 4)])
def test_conv2d_and_gradients(stride, padding, dilation, groups):
    x = _randn(2, 4, 9, 8, seed=14)
    weight = _randn(8, 4 // groups, 3, 3, seed=15)
    bias = _randn(8, seed=16)

    def fn(x, weight, bias):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)

    check_gradients(fn, x, weight, bias, rtol=1e-4, atol=1e-4)


def test_conv1d_conv3d_and_transposed_convolution():
    def fn(x1, w1, x2, w2, x3, w3):
        return {
            "conv1d": F.conv1d(x1, w1, stride=2, padding=1),
            "conv_transpose2d": F.conv_transpose2d(x2, w2, stride=2, padding=1, output_padding=1, groups=2),
            "conv3d": F.conv3d(x3, w3, padding=1),
        }

    check_against_eager(fn, _randn(2, 3, 11, seed=17), _randn(5, 3, 3, seed=18), _randn(1, 4, 5, 5, seed=19),
                        _randn(4, 3, 3, 3, seed=20), _randn(1, 2, 4, 4, 4, seed=21), _randn(3, 2, 3, 3, 3, seed=22),
                        rtol=1e-4, atol=1e-4)
    check_gradients(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2),
                    _randn(1, 4, 5, 5, seed=19), _randn(4, 3, 3, 3, seed=20), rtol=1e-4, atol=1e-4)


def test_pooling():
    def fn(x):
        pooled, indices = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
        return {
            "max_pool": pooled, "indices": indices, "max_pool_ceil": F.max_pool2d(x, 2, stride=2, ceil_mode=True),
            "max_pool_dilated": F.max_pool2d(x, 2, dilation=2), "avg_pool": F.avg_pool2d(x, 2),
            "avg_pool_padded": F.avg_pool2d(x, 3, stride=2, padding=1),
            "avg_pool_exclude_pad": F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
            "adaptive": F.adaptive_avg_pool2d(x, (3, 2)), "global": F.adaptive_avg_pool2d(x, 1),
            "max_pool1d": F.max_pool1d(x[0], 2),
        }

    check_against_eager(fn, _randn(2, 3, 7, 6, seed=23))


def test_max_pool_inference_lowerings():
    """Without indices, small windows lower to a maximum of strided slices, large ones to a reduce-window;
    both must match eager with padding, strides, dilation, ceil mode and NaN propagation."""
    def fn(x):
        return {
            "k3_s2_p1": F.max_pool2d(x, 3, stride=2, padding=1),
            "rectangular": F.max_pool2d(x, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(1, 2), ceil_mode=True),
            "k5_reduce_window": F.max_pool2d(x, 5, stride=1, padding=2),
            "k2_3d": F.max_pool3d(x, 2),
        }

    x = _randn(2, 3, 7, 6, seed=31)
    x[1, 2, 3, 3] = float("nan")
    x[0, 1, :2, :2] = -float("inf")
    actual = check_against_eager(fn, x)
    assert torch.isnan(actual["k3_s2_p1"][1, 2]).any(), "NaN must propagate through the pool"


@pytest.mark.parametrize("pool", ["max", "max_ceil", "avg", "avg_exclude_pad", "adaptive"])
def test_pooling_gradients(pool):
    x = _randn(2, 2, 7, 6, seed=24)
    x[0, 0, 0, :2] = 1.0  # a tie inside one window: the gradient goes to the first maximum
    functions = {
        "max": lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
        "max_ceil": lambda x: F.max_pool2d(x, 2, ceil_mode=True),
        "avg": lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
        "avg_exclude_pad": lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
        "adaptive": lambda x: F.adaptive_avg_pool2d(x, (4, 4)),
    }
    check_gradients(functions[pool], x)


def test_normalization():
    def fn(x, weight, bias, image, running_mean, running_var):
        return {
            "softmax": x.softmax(-1), "log_softmax": x.log_softmax(0),
            "layer_norm": F.layer_norm(x, (6,), weight, bias),
            "layer_norm_2d": F.layer_norm(x, (4, 6)), "group_norm": F.group_norm(image, 2, weight[:4], bias[:4]),
            "batch_norm_eval": F.batch_norm(image, running_mean, running_var, weight[:4], bias[:4], False),
            "instance_norm": F.instance_norm(image),
        }

    check_against_eager(fn, _randn(4, 6, seed=25), _randn(6, seed=26), _randn(6, seed=27), _randn(2, 4, 3, 3, seed=28),
                        _randn(4, seed=29), _randn(4, seed=30).abs() + 0.5, rtol=1e-4, atol=1e-5)


def test_batch_norm_training_updates_running_stats():
    torch.manual_seed(31)
    compiled_model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    eager_model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    eager_model.load_state_dict(compiled_model.state_dict())
    x = _randn(4, 2, 3, 3, seed=32)
    from tests.torch_backend import assert_tree_close, compile_strict

    compiled = compile_strict(compiled_model)
    for _ in range(2):
        expected = eager_model(x)
        actual = compiled(x)
        assert_tree_close(actual, expected, rtol=1e-4, atol=1e-5)
        expected.sum().backward()
        actual.sum().backward()
    assert_tree_close(compiled_model[1].running_mean, eager_model[1].running_mean)
    assert_tree_close(compiled_model[1].running_var, eager_model[1].running_var)
    assert_tree_close(compiled_model[0].weight.grad, eager_model[0].weight.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["plain", "causal", "bool_mask", "float_mask"])
def test_scaled_dot_product_attention_and_gradients(variant):
    q, k, v = (_randn(2, 2, 5, 4, seed=s) for s in (33, 34, 35))
    bool_mask = torch.rand(5, 5, generator=torch.Generator().manual_seed(36)) > 0.3
    bool_mask |= torch.eye(5, dtype=torch.bool)  # no fully masked rows
    float_mask = _randn(5, 5, seed=37)
    options = {
        "plain": {}, "causal": {"is_causal": True}, "bool_mask": {"attn_mask": bool_mask},
        "float_mask": {"attn_mask": float_mask},
    }[variant]

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, **options)

    check_against_eager(fn, q, k, v, rtol=1e-5, atol=1e-5)
    check_gradients(fn, q, k, v)


def test_losses_and_their_gradients():
    scores = _randn(6, 5, seed=38)
    target = torch.tensor([0, 4, 2, -100, 1, 4])
    weight = _randn(5, seed=39).abs() + 0.1
    check_gradients(lambda s: F.cross_entropy(s, target, ignore_index=-100), scores)
    check_gradients(lambda s: F.nll_loss(s.log_softmax(1), target.clamp(min=0), weight=weight), scores)
    check_gradients(lambda s: F.nll_loss(s.log_softmax(1), target.clamp(min=0), reduction="none"), scores)
    check_gradients(lambda s: F.cross_entropy(s.reshape(1, 6, 5, 1).transpose(1, 2),
                                              target.clamp(min=0).reshape(1, 6, 1)), scores)
    check_gradients(lambda s: F.mse_loss(s, s.flip(0).detach()) + F.smooth_l1_loss(s, -s.detach()), scores)
    check_gradients(lambda s: F.binary_cross_entropy_with_logits(s, (s > 0).float()), scores)


def test_other_dtypes():
    def double(x):
        return {"matmul": (x.exp() @ x.t()).sum(dim=0), "softmax": x.softmax(-1), "to_float": x.float() * 3}

    check_against_eager(double, _randn(4, 4, seed=40, dtype=torch.float64), rtol=1e-12, atol=1e-12)

    def half(x):
        return {"bf16": (x * 2 + 1).relu(), "bf16_sum": x.sum(dim=1)}

    check_against_eager(half, _randn(3, 8, seed=41).to(torch.bfloat16), rtol=1e-2, atol=1e-2)
