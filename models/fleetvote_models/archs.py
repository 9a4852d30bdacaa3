"""Model families, in backend-agnostic Keras 3 (no tf.* here: the same code trains on the
TensorFlow, JAX or PyTorch backend).

Every model takes float pixels / 255 (no rescaling layer inside: the exporter then gets input
scale 1/255 and zero point -128, so a board feeds ``pixel - 128``) and ends in a softmax over the
10 classes. BatchNorm layers fold into the preceding convolution at export; ReLUs fuse into it.

Families (the width parameter scales the channel counts):

* ``baseline``: the seed's single-board model rebuilt from its published figures (see
  ``baseline()``); it is the reference the fleet must beat, and fits no cheap board.
* ``vgg``: plain 3x3 conv-BN-ReLU stacks with max-pooling, global average pooling.
* ``resnet``: ResNet-style basic blocks (two 3x3 convs and an identity or 1x1 shortcut, ADD).
* ``dsconv``: MobileNet-style depthwise-separable blocks (3x3 depthwise + 1x1 pointwise).
* ``vggw``, ``resnetw``, ``dsconvw``: the same families with one width per stage
  (``vggw:12-16-48-112``) and one more block at 4x4, wide where parameters are cheap in MACs.
* ``resnet8``: MLPerf Tiny's image-classification reference model (ResNet-8, 16/32/64 filters,
  about 78 k parameters, 12.5 M MACC), the single-board model the fleet is compared with. It is
  the ``reference`` role: it runs on one board and never in a fleet.

MACC convention (ours, used by ``fleetvote analyze`` too): multiply-accumulates of convolution,
depthwise convolution and dense layers only. X-CUBE-AI's count also includes pooling, activation
and softmax work, so it reads a little higher for the same network.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import keras
from keras import layers

# A member's budget is no MACC or byte limit but what the board does with it: it fits a
# nucleo-f411re (flash and RAM of its real firmware image) and answers within 160 ms by the
# planner's estimate from its own instruction count (fleetvote.offline.bom.member_budget; the
# figures of candidate architectures: models/budget.json, from ``python -m fleetvote_models.budget``).
# L2 coefficient of every kernel; build() sets it from the recipe (``--weight-decay``) for the
# duration of one model's construction
WEIGHT_DECAY = 5e-4
_weight_decay = WEIGHT_DECAY


def _reg() -> keras.regularizers.Regularizer:
    return keras.regularizers.L2(_weight_decay)


def _conv_bn_relu(x, filters: int, stride: int = 1, name: str | None = None):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_regularizer=_reg(), name=name)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _head(x, dropout: float = 0.0):
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(10, activation="softmax", kernel_regularizer=_reg())(x)


def baseline(width: int = 32) -> keras.Model:
    """The seed's model, as closely as its published figures allow.

    Published: 32,997,984 MACC (X-CUBE-AI's count), 1.34 M float parameters of which the two
    large dense layers hold 39.1 % each, Conv2D+ReLU blocks, 2x2 max-pool then twice the filters.
    Rebuilt: conv 32,32 @32x32 | pool | 64,64 @16x16 | pool | 128 @8x8 | pool | 128 @4x4 | pool |
    flatten 512 | dense 1024 | dense 512 | dense 10. That gives 1,342,250 parameters (dense
    layers 39.1 % each) and 32,606,208 MACC by our convention.

    BatchNormalization after each convolution is for training only: the exporter folds it into
    the convolution's weights and bias, so the deployed graph is the seed's Conv2D+ReLU stack.
    """
    w = width
    inp = keras.Input((32, 32, 3), name="image")
    x = inp
    for filters, n in ((w, 2), (2 * w, 2), (4 * w, 1), (4 * w, 1)):
        for _ in range(n):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=_reg())(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(1024, activation="relu", kernel_regularizer=_reg())(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(512, activation="relu", kernel_regularizer=_reg())(x)
    out = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out, name=f"baseline_w{w}")


def vgg(width: int = 12) -> keras.Model:
    """w @32 | pool | 2w, 2w @16 | pool | 4w, 4w @8 | GAP | dense. w=12: 4.2 M MACC."""
    w = width
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, w)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(x, 2 * w)
    x = _conv_bn_relu(x, 2 * w)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(x, 4 * w)
    x = _conv_bn_relu(x, 4 * w)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(x, 8 * w)
    return keras.Model(inp, _head(x, 0.1), name=f"vgg_w{w}")


def _basic_block(x, filters: int, stride: int):
    shortcut = x
    y = _conv_bn_relu(x, filters, stride)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=_reg())(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 kernel_regularizer=_reg())(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(width: int = 16) -> keras.Model:
    """stem w @32 | pool | block w @16 | block 2w /2 @8 | block 4w /2 @4 | GAP | dense.

    MLPerf Tiny's ResNet-8 without the full-resolution block (which alone costs 4.7 M MACC).
    """
    w = width
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, w)
    x = layers.MaxPooling2D(2)(x)
    x = _basic_block(x, w, 1)
    x = _basic_block(x, 2 * w, 2)
    x = _basic_block(x, 4 * w, 2)
    return keras.Model(inp, _head(x), name=f"resnet_w{w}")


def resnet8(width: int = 16) -> keras.Model:
    """MLPerf Tiny's ResNet-8 (mlcommons/tiny, benchmark/training/image_classification/keras_model.py):
    stem w @32 | block w @32 | block 2w /2 @16 | block 4w /2 @8 | average pool | dense.

    As MLPerf defines it: the first block runs at full resolution with an identity shortcut; the
    strided blocks' shortcuts are a 1x1 convolution with a bias and no BatchNormalization (MLPerf's
    other convolutions carry a bias too, which the BatchNormalization after them makes redundant).
    w=16: 78,426 parameters with BatchNormalization's, 12,501,632 MACC by our convention (the stem
    0.44 M, the full-resolution block 4.72 M of them).
    """
    w = width
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, w)
    for filters, stride in ((w, 1), (2 * w, 2), (4 * w, 2)):
        y = _conv_bn_relu(x, filters, stride)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=_reg())(y)
        y = layers.BatchNormalization()(y)
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, kernel_regularizer=_reg())(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    return keras.Model(inp, _head(x), name=f"resnet8_w{w}")


def _ds_block(x, filters: int, stride: int):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               depthwise_regularizer=_reg())(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_regularizer=_reg())(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def dsconv(width: int = 32) -> keras.Model:
    """stem w @32 | ds 2w /2 | ds 2w | ds 4w /2 | ds 4w | ds 8w /2 | ds 8w | GAP | dense."""
    w = width
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, w)
    x = _ds_block(x, 2 * w, 2)
    x = _ds_block(x, 2 * w, 1)
    x = _ds_block(x, 4 * w, 2)
    x = _ds_block(x, 4 * w, 1)
    x = _ds_block(x, 8 * w, 2)
    x = _ds_block(x, 8 * w, 1)
    return keras.Model(inp, _head(x, 0.1), name=f"dsconv_w{w}")


# ---- wide at low resolution (issue 16) ----------------------------------------------------------
# A convolution's parameters per MAC are 1 / (its output's height x width): 1/256 at 16x16, 1/64 at
# 8x8, 1/16 at 4x4. The families below take one width per stage (``family:a-b-c-d``: the 32x32
# stem, then the 16x16, 8x8 and 4x4 stages) and carry one more block at 4x4 than their narrow
# cousins, so that the member's capacity sits where it is cheap in MACs. Widths are multiples of 4
# (every DSP kernel works on groups of 4 channels) and the pooled 32x32 stage has 12, 16 or 24
# channels (the max pool's fastest kernels). MACC and parameters in the docstrings are
# ``keras_macc`` and Keras' ``count_params`` (BatchNormalization's included) of the presets queued
# in models/recipes.json; tests/test_models.py checks them.


def vggw(a: int = 12, b: int = 16, c: int = 48, d: int = 112) -> keras.Model:
    """a @32 | pool | b, b @16 | pool | c, c @8 | pool | d, d @4 | GAP | dense.

    vgg:12 with per-stage widths and a second 4x4 convolution. vggw:12-16-48-112: 5,715,040 MACC,
    195,870 parameters (vgg:12: 4,977,600 MACC, 82,654 parameters).
    """
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, a)
    x = layers.MaxPooling2D(2)(x)
    for width in (b, c, d):
        x = _conv_bn_relu(x, width)
        x = _conv_bn_relu(x, width)
        if width != d:
            x = layers.MaxPooling2D(2)(x)
    return keras.Model(inp, _head(x, 0.1), name=f"vggw_{a}_{b}_{c}_{d}")


def resnetw(a: int = 16, b: int = 16, c: int = 32, d: int = 80) -> keras.Model:
    """stem a @32 | pool | block b @16 | block c /2 @8 | block d /2 @4 | block d @4 | GAP | dense.

    resnet:16 with per-stage widths and a second 4x4 block. resnetw:16-16-32-80: 5,714,720 MACC,
    220,762 parameters (resnet:18: 4,313,808 MACC, 99,280 parameters).
    """
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, a)
    x = layers.MaxPooling2D(2)(x)
    x = _basic_block(x, b, 1)
    x = _basic_block(x, c, 2)
    x = _basic_block(x, d, 2)
    x = _basic_block(x, d, 1)
    return keras.Model(inp, _head(x), name=f"resnetw_{a}_{b}_{c}_{d}")


def dsconvw(a: int = 16, b: int = 48, c: int = 96, d: int = 224) -> keras.Model:
    """stem a @32 | ds b /2 | ds b @16 | ds c /2 | ds c @8 | ds d /2 | ds d | ds d @4 | GAP | dense.

    dsconv with per-stage widths and a third 4x4 block; nearly all MACs are 1x1 convolutions,
    so it is the widest family for its MACs. dsconvw:16-48-96-224: 4,374,208 MACC, 155,114 parameters
    (dsconv:26: 4,150,432 MACC, 98,082 parameters).
    """
    inp = keras.Input((32, 32, 3), name="image")
    x = _conv_bn_relu(inp, a)
    x = _ds_block(x, b, 2)
    x = _ds_block(x, b, 1)
    x = _ds_block(x, c, 2)
    x = _ds_block(x, c, 1)
    x = _ds_block(x, d, 2)
    x = _ds_block(x, d, 1)
    x = _ds_block(x, d, 1)
    return keras.Model(inp, _head(x, 0.1), name=f"dsconvw_{a}_{b}_{c}_{d}")


FAMILIES: dict[str, Callable[..., keras.Model]] = {
    "baseline": baseline,
    "vgg": vgg,
    "resnet": resnet,
    "dsconv": dsconv,
    "resnet8": resnet8,
    "vggw": vggw,
    "resnetw": resnetw,
    "dsconvw": dsconvw,
}


def parse_arch(arch: str) -> tuple[str, tuple[int, ...]]:
    """``family``, ``family:width`` (``vgg:12``) or ``family:a-b-c-d`` (one width per stage,
    ``vggw:12-16-48-112``) -> (family, widths). Raises ValueError naming what to write instead."""
    family, _, spec = arch.partition(":")
    if family not in FAMILIES:
        raise ValueError(f"unknown architecture {family!r}; choose from {sorted(FAMILIES)}")
    try:
        widths = tuple(int(w) for w in spec.split("-")) if spec else ()
    except ValueError:
        raise ValueError(f"{arch!r}: widths are positive integers, e.g. {family}:12 or {family}:12-16-48-112") from None
    if any(w <= 0 for w in widths):
        raise ValueError(f"{arch!r}: widths are positive integers")
    most = len(inspect.signature(FAMILIES[family]).parameters)
    if len(widths) > most:
        raise ValueError(f"{arch!r}: {family} takes at most {most} width(s), one per stage")
    return family, widths


def build(arch: str, weight_decay: float = WEIGHT_DECAY) -> keras.Model:
    """``family``, ``family:width`` (``vgg:12``) or ``family:a-b-c-d`` (``vggw:12-16-48-112``);
    every kernel gets L2 ``weight_decay``."""
    global _weight_decay
    family, widths = parse_arch(arch)
    _weight_decay = weight_decay
    try:
        return FAMILIES[family](*widths)
    finally:
        _weight_decay = WEIGHT_DECAY


def keras_macc(model: keras.Model) -> int:
    """MACC of conv, depthwise and dense layers (our convention), from Keras shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            total += math.prod(layer.kernel.shape)
    return int(total)
