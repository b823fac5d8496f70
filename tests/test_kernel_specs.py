"""Kernel specs: names, config keys, nn-Meter feature order and values, unit mapping."""

import numpy as np
import pytest

from nn_farm.errors import UnknownKernelError
from nn_farm.predictor import kernel_specs as ks

ISSUE_KERNELS = [
    "conv-bn-relu", "conv-bn-relu6", "conv-bn", "conv-relu", "conv-relu6", "conv-hswish",
    "conv-block", "conv-bn-hswish", "dwconv-bn", "dwconv-relu", "dwconv-relu6",
    "dwconv-bn-relu", "dwconv-bn-relu6", "dwconv-block", "dwconv-bn-hswish", "maxpool",
    "avgpool", "fc", "concat", "split", "channelshuffle", "se", "global-avgpool", "bnrelu",
    "bn", "hswish", "relu", "addrelu", "add",
    "swish",  # beyond nn-Meter's: EfficientNets' activation
]


def test_every_issue_kernel_has_a_spec_and_nothing_else():
    assert sorted(ks.KERNEL_TYPES) == sorted(ISSUE_KERNELS)


@pytest.mark.parametrize("kernel_type", ISSUE_KERNELS)
def test_features_have_the_spec_width(kernel_type):
    spec = ks.get_spec(kernel_type)
    config = {key: 2 for key in spec.config_keys}
    X = ks.features(kernel_type, [config, config])
    assert X.shape == (2, len(spec.feature_names))


def test_conv_features_match_nnmeter_formula_by_hand():
    # params = 24 * (3*3*24 + 1) = 5208; flops = 2 * 56 * 56 * 5208 = 32,664,576
    X = ks.features("conv-bn-relu", [dict(HW=56, CIN=24, COUT=24, KERNEL_SIZE=3, STRIDES=1)])
    np.testing.assert_allclose(X[0], [56, 24, 24, 3, 1, 16.332288, 0.005208])


def test_dwconv_features_repeat_cin_as_cout_and_count_depthwise_flops():
    # params = 32 * (3*3 + 1) = 320; flops = 2 * 56 * 56 * 320 = 2,007,040
    X = ks.features("dwconv-bn-relu", [dict(HW=112, CIN=32, KERNEL_SIZE=3, STRIDES=2)])
    np.testing.assert_allclose(X[0], [112, 32, 32, 3, 2, 1.00352, 0.00032])


def test_fc_and_pool_features():
    # (2 * 1280 + 1) * 1000 = 2,561,000
    np.testing.assert_allclose(ks.features("fc", [dict(CIN=1280, COUT=1000)])[0],
                               [1280, 1000, 1.2805, 2.561])
    np.testing.assert_allclose(
        ks.features("maxpool", [dict(HW=112, CIN=64, KERNEL_SIZE=3, POOL_STRIDES=2)])[0],
        [112, 64, 64, 3, 2])
    np.testing.assert_allclose(ks.features("add", [dict(HW=28, CIN=40)])[0], [28, 40, 40])


def test_features_vectorised_equal_row_by_row_and_array_input():
    rng = np.random.default_rng(0)
    configs = [dict(HW=int(h), CIN=int(c), COUT=int(o), KERNEL_SIZE=int(k), STRIDES=int(s))
               for h, c, o, k, s in zip(rng.integers(1, 224, 50), rng.integers(3, 512, 50),
                                        rng.integers(8, 512, 50), rng.choice([1, 3, 5], 50),
                                        rng.choice([1, 2], 50))]
    together = ks.features("conv-bn", configs)
    one_by_one = np.vstack([ks.features("conv-bn", [c]) for c in configs])
    np.testing.assert_array_equal(together, one_by_one)
    array = np.array([[c[k] for k in ks.get_spec("conv-bn").config_keys] for c in configs])
    np.testing.assert_array_equal(ks.features("conv-bn", array), together)


def test_bad_configs_name_what_is_wrong():
    with pytest.raises(ValueError, match="KERNEL_SIZE"):
        ks.features("conv-bn-relu", [dict(HW=1, CIN=1, COUT=1, STRIDES=1)])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        ks.features("relu", np.zeros((3, 5)))
    with pytest.raises(UnknownKernelError, match="sigmoid"):
        ks.features("sigmoid", [])


def unit(op, **fields):
    return {"op": op, "name": f"n#{op}", **fields}


def test_units_map_to_nnmeter_kernel_types():
    conv = unit("conv", inputh=56, cin=24, cout=48, ks=[3, 3], strides=[1, 2, 2, 1],
                input_tensors=[[1, 56, 56, 24]])
    # BN folded into the conv: a plain conv runs as conv-bn
    assert ks.config_from_kernel_unit(conv) == (
        "conv-bn", dict(HW=56, CIN=24, COUT=48, KERNEL_SIZE=3, STRIDES=2))
    assert ks.kernel_type_of("dwconv-hswish") == "dwconv-bn-hswish"
    assert ks.kernel_type_of("conv-add-relu") == "conv-bn-relu"  # nn-Meter's merged kernel
    dw = unit("dwconv-relu6", inputh=28, cin=96, cout=96, ks=[5, 5], strides=[1, 1])
    assert ks.config_from_kernel_unit(dw) == (
        "dwconv-relu6", dict(HW=28, CIN=96, KERNEL_SIZE=5, STRIDES=1))
    assert ks.config_from_kernel_unit(unit("dwconv", inputh=7, cin=8, ks=[3, 3]))[0] == \
        "dwconv-bn"
    assert ks.config_from_kernel_unit(unit("bn-relu", input_tensors=[[1, 14, 14, 8]]))[0] == "bnrelu"
    assert ks.config_from_kernel_unit(unit("fc-relu", cin=10, cout=5))[0] == "fc"
    # swish has no nn-Meter kernel; alone it has nn-farm's, behind a conv it is priced as hswish
    swish = unit("swish", inputh=112, cin=32, input_tensors=[[1, 112, 112, 32]])
    assert ks.config_from_kernel_unit(swish) == ("swish", dict(HW=112, CIN=32))
    assert ks.kernel_type_of("conv-swish") == "conv-hswish"
    assert ks.kernel_type_of("dwconv-bn-swish") == "dwconv-bn-hswish"
    assert ks.kernel_type_of("dwconv-swish") == "dwconv-bn-hswish"


def test_global_avgpool_gets_its_real_input_size():
    # nn-Meter passes HW=1 for every global pool; the real size is 7.
    gap = unit("gap", inputh=7, cin=1280, input_tensors=[[1, 7, 7, 1280]])
    assert ks.config_from_kernel_unit(gap) == ("global-avgpool", dict(HW=7, CIN=1280))


def test_concat_se_split_add_read_their_tensors():
    concat = unit("concat", input_tensors=[[1, 28, 28, c] for c in (8, 16, 24, 32, 40)])
    assert ks.config_from_kernel_unit(concat)[1] == dict(HW=28, NS=5, CIN1=8, CIN2=16,
                                                         CIN3=24, CIN4=32)
    two = unit("concat", input_tensors=[[1, 14, 14, 8], [1, 14, 14, 16]])
    assert ks.config_from_kernel_unit(two)[1] == dict(HW=14, NS=2, CIN1=8, CIN2=16, CIN3=0, CIN4=0)
    se = unit("se", input_tensors=[[1, 1, 1, 16], [1, 28, 28, 64]])
    assert ks.config_from_kernel_unit(se)[1] == dict(HW=28, CIN=64)
    shuffle = unit("channel_shuffle", input_tensors=[[1, 28, 28, 116]])
    assert ks.config_from_kernel_unit(shuffle) == ("channelshuffle", dict(HW=28, CIN=116))
    add = unit("add-relu", input_tensors=[[1, 56, 56, 24], [1, 56, 56, 24]])
    assert ks.config_from_kernel_unit(add) == ("addrelu", dict(HW=56, CIN=24))


def test_units_without_a_spec_or_fields_raise_naming_them():
    with pytest.raises(UnknownKernelError, match="sigmoid"):
        ks.config_from_kernel_unit(unit("sigmoid", input_tensors=[[1, 7, 7, 8]]))
    with pytest.raises(UnknownKernelError, match=r"n#conv-bn.*conv-bn"):
        ks.config_from_kernel_unit(unit("conv-bn", inputh=7, cin=8, ks=[1, 1]))  # no cout
    with pytest.raises(UnknownKernelError, match="no 'op'"):
        ks.config_from_kernel_unit({"name": "x"})


def test_conv_families_fall_back_to_nnmeter_merged_kernels():
    assert ks.fallback_kernel_type("conv-bn-relu6") == "conv-bn-relu"
    assert ks.fallback_kernel_type("dwconv-bn") == "dwconv-bn-relu"
    assert ks.fallback_kernel_type("conv-bn-relu") is None
    assert ks.fallback_kernel_type("relu") is None
    assert ks.fallback_kernel_type("swish") == "hswish"  # packages built before it had a kernel


def test_config_rows_of_a_batch_equal_the_rows_one_by_one():
    usual = [unit("conv-bn-relu", inputh=h, cin=c, cout=2 * c, ks=[k, k], strides=[s, s])
             for h, c, k, s in [(56, 24, 3, 1), (28, 40, 5, 2), (7, 320, 1, 1)]]
    other = unit("conv-bn-relu", cout=16, ks=[1, 3, 3, 1], strides=[1, 2, 2, 1],
                 input_tensors=[[1, 14, 14, 8]])  # TF spelling, no inputh / cin
    for units in (usual, usual + [other]):
        assert ks.config_rows("conv-bn-relu", units) == \
            [ks.config_row_from_kernel_unit(u)[1] for u in units]
    pools = [unit("maxpool", inputh=28, cin=8, ks=[2, 2], strides=[2, 2])]
    assert ks.config_rows("maxpool", pools) == [ks.config_row_from_kernel_unit(pools[0])[1]]
    with pytest.raises(UnknownKernelError, match="conv-bn-relu"):
        ks.config_rows("conv-bn-relu", usual + [unit("conv-bn-relu", ks=[3, 3])])


def test_a_kernel_that_is_not_square_is_priced_by_its_taps():
    # InceptionV3's 1x7 and 7x1 convs: nn-Meter's index 1 reads them as a 7x7 and a 1x1.
    convs = [unit("conv-bn-relu", inputh=17, cin=128, cout=192, ks=k, strides=[1, 1])
             for k in ([1, 7], [7, 1], [3, 3], [1, 1, 7, 1])]
    rows = ks.config_rows("conv-bn-relu", convs)
    assert rows == [ks.config_row_from_kernel_unit(u)[1] for u in convs]
    assert rows[0] == rows[1] == rows[3] and rows[0][3] == pytest.approx(7 ** 0.5) and rows[2][3] == 3
    assert type(rows[2][3]) is int  # square kernels keep nn-Meter's integer config
    flops = ks.features("conv-bn-relu", np.array(rows, dtype=float))[:, 5] * 2e6
    assert flops[:2] == pytest.approx(2 * 17 * 17 * 192 * (7 * 128 + 1))
    pool = unit("maxpool", inputh=28, cin=8, ks=[1, 3, 3, 1], strides=[1, 2, 2, 1])
    assert ks.config_rows("maxpool", [pool]) == [(28, 8, 3, 2)]


@pytest.mark.parametrize("kernel_type", ks.KERNEL_TYPES)
def test_cost_terms_grow_with_the_kernel(kernel_type):
    spec = ks.get_spec(kernel_type)
    small = dict(HW=14, CIN=32, COUT=32, KERNEL_SIZE=3, STRIDES=1, POOL_STRIDES=1, NS=2,
                 CIN1=32, CIN2=32, CIN3=0, CIN4=0)
    big = {k: (2 * v if k in ("HW", "CIN", "COUT", "CIN1", "CIN2") else v) for k, v in small.items()}
    X = ks.features(kernel_type, [{k: c[k] for k in spec.config_keys} for c in (small, big)])
    terms = ks.cost_terms(X, kernel_type)
    assert terms.shape == (2, 2) and np.all(np.isfinite(terms)) and np.all(terms >= 0)
    assert np.all(terms[1] >= terms[0]) and terms[1].sum() > terms[0].sum()
    tiled = ks.cost_terms(X, kernel_type, lanes=True)
    if spec.family == "conv":
        # Multiply-adds plain, in 8- and 16-channel output tiles (32 channels fill both), moved.
        assert tiled.shape == (2, 4) and np.array_equal(tiled[:, [0, 3]], terms)
        assert np.array_equal(tiled[:, 1], terms[:, 0]) and np.array_equal(tiled[:, 2], terms[:, 0])
    else:
        assert np.array_equal(tiled, terms)


def test_conv_tiles_count_part_filled_output_tiles_whole():
    X = ks.features("conv-bn-relu", [dict(HW=56, CIN=64, COUT=cout, KERNEL_SIZE=1, STRIDES=1) for cout in (16, 17, 24)])
    flops, by8, by16, _ = ks.cost_terms(X, "conv-bn-relu", lanes=True).T
    assert np.allclose(by8 / flops, [1, 24 / 17, 1]) and np.allclose(by16 / flops, [1, 32 / 17, 32 / 24])
