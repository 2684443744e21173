"""scripts/int8_distill.py: the network it trains for int8 is E's own network, folded and rounded
where ONNX Runtime's int8 graph rounds, and gradients reach the weights through the rounding."""

import pytest
import torch
from conftest import load_script

from deepfake_detect.models.networks import build_model


@pytest.fixture(scope="module")
def distill():
    return load_script("int8_distill")


def lite_net():
    """tf_efficientnet_lite0 with random weights and batch-norm statistics (no SE blocks: every
    convolution has its own batch norm, as in the bundled model)."""
    torch.manual_seed(0)
    net = build_model("tf_efficientnet_lite0").eval()
    with torch.no_grad():
        for module in net.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


def test_folding_the_batch_norms_keeps_the_networks_answers_and_architecture(distill):
    net = lite_net()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        distill.fold_batch_norms(net)
        after = net(x)
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)
    fresh = build_model("tf_efficientnet_lite0")
    fresh.load_state_dict(net.state_dict())  # still E's architecture: the export reads it
    for _, bn in distill.conv_bn_pairs(net):
        assert torch.all(bn.weight == 1) and torch.all(bn.running_mean == 0)


def test_the_simulation_rounds_only_when_asked_and_trains_through_the_rounding(distill):
    net = lite_net()
    distill.fold_batch_norms(net)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        exact, features = net(x), net.backbone(x)
    rounding = distill.simulate_int8(net)
    distill.observe_ranges(net, rounding, x)
    assert {"image", "pooled"} <= set(rounding.ranges) and len(rounding.ranges) > 30
    with torch.no_grad():
        error = torch.linalg.norm(net.backbone(x) - features) / torch.linalg.norm(features)
    assert 0 < error < 0.2  # rounded, and close (the pooled features, before the fp32 head)
    rounding.mode = "observe"  # ranges are taken from the fp32 network, weights not rounded
    with torch.no_grad():
        assert torch.equal(net(x), exact)
    rounding.mode = "round"
    loss = torch.mean((net(x) - exact) ** 2)
    loss.backward()
    conv = net.backbone.conv_stem
    assert conv.parametrizations.weight.original.grad.abs().sum() > 0
    state = distill.plain_state(net)
    assert set(state) == set(build_model("tf_efficientnet_lite0").state_dict())
    assert torch.equal(state["backbone.conv_stem.weight"], conv.parametrizations.weight.original)
