"""The autodiff tape: every op against float64 central differences, graph semantics, dtypes."""

import numpy as np
import pytest

import reference
from stn_numba import tensor as tape
from stn_numba.tensor import Function, Tensor, no_grad


def gradcheck(function, *arrays, seed=0, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Compare the tape's gradients of ``sum(function(*tensors) * w)`` with central differences.

    ``arrays`` are float64 inputs (each becomes a Tensor that requires grad);
    ``w`` is a fixed random weighting, so every output element matters.
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = function(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * weights).sum().backward()
    for i, array in enumerate(arrays):
        def loss(x, i=i):
            inputs = [Tensor(x if j == i else a) for j, a in enumerate(arrays)]
            with no_grad():
                return float((function(*inputs).data * weights).sum())

        expected = reference.central_difference(loss, array, eps)
        assert tensors[i].grad is not None, f"input {i} got no gradient"
        assert tensors[i].grad.shape == array.shape
        np.testing.assert_allclose(tensors[i].grad, expected, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


# ------------------------------------------------------------------ every op


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((2, 3, 1), (3, 4)), ((4,), (2, 1)), ((), (2, 3))]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
def test_binary_ops_gradcheck(rng, shapes, op):
    a = rng.uniform(0.5, 2.0, shapes[0])
    b = rng.uniform(0.5, 2.0, shapes[1])
    function = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "pow": lambda x, y: x ** y,
    }[op]
    gradcheck(function, a, b)


@pytest.mark.parametrize("function,low", [
    (lambda x: -x, -2.0),
    (lambda x: x ** 3, -2.0),
    (lambda x: x ** 0.5, 0.5),
    (lambda x: 2.0 ** x, -2.0),
    (lambda x: 3.0 - x, -2.0),
    (lambda x: 3.0 / x, 0.5),
    (lambda x: x.exp(), -2.0),
    (lambda x: x.log(), 0.5),
    (lambda x: x.relu(), -2.0),
    (lambda x: x.tanh(), -2.0),
    (lambda x: x.sigmoid(), -8.0),
])
def test_unary_ops_gradcheck(rng, function, low):
    x = rng.uniform(low, 2.0, (3, 5))
    if low < 0:
        x[np.abs(x) < 0.05] = 0.3  # keep finite differences away from relu's kink
    gradcheck(function, x)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                                    ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_gradcheck(rng, shapes):
    gradcheck(lambda a, b: a @ b, rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1]))


@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_and_mean_gradcheck(rng, dim, keepdim):
    x = rng.standard_normal((2, 3, 4))
    gradcheck(lambda t: t.sum(dim, keepdim), x)
    gradcheck(lambda t: t.mean(dim, keepdim), x)


def test_max_gradcheck(rng):
    x = rng.standard_normal((3, 4, 5))
    gradcheck(lambda t: t.max(), x)
    gradcheck(lambda t: t.max(1).values, x)
    gradcheck(lambda t: t.max(-1, keepdim=True).values, x)


def test_max_with_dim_returns_values_and_indices_like_numpy(rng):
    x = rng.standard_normal((3, 4))
    values, indices = Tensor(x).max(1)
    np.testing.assert_array_equal(values.data, x.max(1))
    np.testing.assert_array_equal(indices, x.argmax(1))


def test_max_ties_share_the_gradient_and_dim_max_picks_the_first():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])
    x.grad = None
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [1, 0, 0]])


def test_shape_ops_gradcheck(rng):
    x = rng.standard_normal((2, 3, 4))
    gradcheck(lambda t: t.reshape(4, 6) * np.arange(24.0).reshape(4, 6), x)
    gradcheck(lambda t: t.view(-1), x)
    gradcheck(lambda t: t.flatten(1), x)
    gradcheck(lambda t: t.transpose(0, 2), x)
    gradcheck(lambda t: t.permute(1, 2, 0), x)
    gradcheck(lambda t: t.T, x)


@pytest.mark.parametrize("index", [
    1,
    (slice(None), 2),
    (Ellipsis, slice(1, 3)),
    (np.array([0, 1, 0]),),                      # repeated rows: gradients add
    (slice(None), np.array([2, 2, 0]), np.array([1, 3, 1])),
    (None, 0, slice(None, None, -1)),
])
def test_indexing_gradcheck(rng, index):
    gradcheck(lambda t: t[index], rng.standard_normal((2, 3, 4)))


def test_concat_gradcheck(rng):
    from stn_numba.nn import functional as F

    gradcheck(lambda a, b, c: F.concat([a, b, c], dim=1),
              rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3)))


def test_astype_is_differentiable_and_explicit(rng):
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, 2.0)


# ------------------------------------------------------------------ graph semantics


def test_diamond_graph_sums_both_paths():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x * 3.0
    z = y * y + y.exp()          # y feeds two branches that meet again
    z.sum().backward()
    xv = x.data
    np.testing.assert_allclose(x.grad, 18 * xv + 3 * np.exp(3 * xv), rtol=1e-14)


def test_tensor_used_twice_in_one_op():
    x = Tensor(np.array([2.0, 5.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1)


def test_backward_accumulates_into_leaf_grads_across_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_shared_gradient_arrays_are_not_aliased():
    # Add passes the same gradient array to both inputs; accumulating into one must not change the other.
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    (a * 4).sum().backward()
    np.testing.assert_array_equal(a.grad, 5.0)
    np.testing.assert_array_equal(b.grad, 1.0)


def test_backward_frees_the_graph_unless_retained():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_non_leaf_grads_are_not_kept_and_leaves_without_requires_grad_get_none():
    x = Tensor(np.ones(3), requires_grad=True)
    constant = Tensor(np.full(3, 2.0))
    y = x * constant
    y.sum().backward()
    assert y.grad is None and constant.grad is None
    assert not y.is_leaf and x.is_leaf


def test_gradients_only_for_inputs_that_need_them():
    seen = []

    class Spy(Function):
        def forward(self, a, b):
            seen.append(self.needs_input_grad)
            return a * b

        def backward(self, grad):
            return (grad * 2 if self.needs_input_grad[0] else None,
                    grad * 3 if self.needs_input_grad[1] else None)

    x = Tensor(np.ones(2), requires_grad=True)
    image = Tensor(np.ones(2))
    Spy.apply(image, x).sum().backward()
    assert seen == [(False, True)]
    assert image.grad is None
    np.testing.assert_array_equal(x.grad, 3.0)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return {library["num_threads"] for library in threadpool_info() if library["user_api"] == "blas"}


@pytest.mark.parametrize("single_threaded", [False, True])
def test_functions_that_ask_run_forward_and_backward_with_single_threaded_blas(single_threaded):
    from threadpoolctl import threadpool_limits

    seen = []

    class Product(Function):
        single_threaded_blas = single_threaded

        def forward(self, a, b):
            seen.append(_blas_threads())
            return a @ b

        def backward(self, grad):
            seen.append(_blas_threads())
            return grad @ self.parents[1].data.T, None

    with threadpool_limits(limits=2, user_api="blas"):
        Product.apply(Tensor(np.ones((2, 2)), requires_grad=True), Tensor(np.ones((2, 2)))).sum().backward()
        assert _blas_threads() == {2}
    expected = {1} if single_threaded else {2}
    assert seen == [expected, expected]


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 5000, rtol=1e-10)


def test_no_grad_records_nothing_and_restores_the_mode():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2
        assert not tape.is_grad_enabled()
        with tape.enable_grad():
            z = x * 3
    assert tape.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad

    @no_grad()
    def evaluate(t):
        return t * 2

    assert not evaluate(x).requires_grad


def test_detach_cuts_the_graph():
    x = Tensor(np.ones(2), requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad
    (x * y).sum().backward()
    np.testing.assert_array_equal(x.grad, 2.0)


def test_backward_errors_are_clear():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(1)).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(2))
    with pytest.raises(TypeError, match="float32 and float64"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="object"):
        Tensor(np.array([None]))


def test_backward_with_explicit_gradient():
    x = Tensor(np.arange(3.0), requires_grad=True)
    (x * 2).backward(np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0, 200.0])


# ------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("scalar", [2, 2.5, np.float64(2.5), np.int64(3), True])
def test_scalars_never_promote_float32(rng, scalar):
    x = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    for y in (x + scalar, scalar - x, x * scalar, x / (scalar + 1), (scalar + 1) / (x * x + 1),
              x ** 2, abs(scalar) ** x):
        assert y.dtype == np.float32
    (x * scalar + x ** 2).sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_stays_float32_through_every_op(rng):
    x = Tensor(rng.uniform(0.5, 1.5, (2, 3)).astype(np.float32), requires_grad=True)
    y = (x.exp().log().tanh().sigmoid().relu() @ Tensor(np.ones((3, 2), np.float32))).mean()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32


def test_integer_arrays_take_the_tensor_dtype(rng):
    x = Tensor(np.ones(3, np.float32))
    assert (x + np.arange(3)).dtype == np.float32


def test_mixing_float32_and_float64_is_refused():
    x32 = Tensor(np.ones(2, np.float32))
    x64 = Tensor(np.ones(2))
    with pytest.raises(TypeError, match="float32 and float64"):
        x32 + x64
    with pytest.raises(TypeError, match="promotes"):
        x32 * np.ones(2)
    with pytest.raises(TypeError):
        x32 @ np.ones((2, 2))


def test_ndarray_on_the_left_gives_a_tensor():
    x = Tensor(np.ones(2), requires_grad=True)
    y = np.array([2.0, 3.0]) * x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])


def test_manual_seed_makes_random_numbers_repeatable():
    a = tape.manual_seed(7).random(3)
    b = tape.manual_seed(7).random(3)
    np.testing.assert_array_equal(a, b)
    assert tape.default_generator() is not None


def test_tensor_properties():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.shape == (2, 2) and x.size() == (2, 2) and x.size(1) == 2 and len(x) == 2
    assert x.ndim == 2 and x.dtype == np.float64
    assert x.sum().item() == 10.0
    assert "Tensor(" in repr(x)
