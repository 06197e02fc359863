"""Tests for protodef.upgrade: old Caffe formats (V0, V1, net-level inputs) to today's format."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from support import CORPUS

from caffe_proto import caffe_pb2
from protodef.errors import ProtodefError, SchemaError
from protodef.upgrade import (
    V0_LAYER_TYPES,
    V1_LAYER_TYPES,
    needs_upgrade,
    upgrade_net,
    upgrade_text,
)

# Fields that differ between the old and the modern copy of the same BVLC model for reasons
# that have nothing to do with the upgrade: the modern files spell out fillers, and the newer
# examples added a few settings (e.g. data backends) that the older files left at defaults.
# Parameter *messages* are compared with these fields cleared.
_FILLERS = ("weight_filler", "bias_filler")


def net_from_text(text: str) -> caffe_pb2.NetParameter:
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


def corpus_net(relative: str) -> caffe_pb2.NetParameter:
    path = CORPUS / relative
    return net_from_text(path.read_text(encoding="utf-8", errors="replace"))


def corpus_files(*patterns: str) -> list:
    """pytest params of the corpus files (relative paths) the patterns match, marked `corpus`."""
    found = [str(p.relative_to(CORPUS)) for pattern in patterns for p in sorted(CORPUS.glob(pattern))]
    return ([pytest.param(relative, id=relative, marks=pytest.mark.corpus) for relative in found]
            or [pytest.param(None, id="no-corpus", marks=pytest.mark.corpus)])


OLD_FILES = corpus_files("bvlc_caffe_v0_2014/*.prototxt", "bvlc_caffe_v1_2015/*.prototxt",
                         "vgg19_v1_deep_style/*.prototxt", "age_gender/*.prototxt")


def by_key(net: caffe_pb2.NetParameter
           ) -> dict[tuple[str, tuple[str, ...]], caffe_pb2.LayerParameter]:
    """Layers keyed by name and phase, since train/test nets reuse names for the two phases."""
    out = {}
    for layer in net.layer:
        phases = tuple(sorted(caffe_pb2.Phase.Name(rule.phase) for rule in layer.include
                              if rule.HasField("phase")))
        key = (layer.name, phases)
        assert key not in out, key
        out[key] = layer
    return out


def param_messages(layer: caffe_pb2.LayerParameter) -> dict[str, object]:
    """Every *_param message of a layer, with fillers cleared (see _FILLERS)."""
    out = {}
    for fd, value in layer.ListFields():
        if fd.message_type is None or not fd.name.endswith("_param"):
            continue
        copy = type(value)()
        copy.CopyFrom(value)
        for name in _FILLERS:
            if name in copy.DESCRIPTOR.fields_by_name:
                copy.ClearField(name)
        out[fd.name] = copy
    return out


def lr_decay(layer: caffe_pb2.LayerParameter) -> list[tuple[float, float]]:
    return [(spec.lr_mult, spec.decay_mult) for spec in layer.param]


def assert_same_layer(ours: caffe_pb2.LayerParameter, theirs: caffe_pb2.LayerParameter,
                      *, compare_params: bool = True) -> None:
    where = f"layer {ours.name}"
    assert ours.type == theirs.type, where
    assert list(ours.bottom) == list(theirs.bottom), where
    assert list(ours.top) == list(theirs.top), where
    assert list(ours.include) == list(theirs.include), where
    assert list(ours.exclude) == list(theirs.exclude), where
    assert list(ours.loss_weight) == list(theirs.loss_weight), where
    # lr_mult / decay_mult are compared by value (an unset decay_mult and "decay_mult: 1" mean
    # the same); names of shared params must agree too.
    assert lr_decay(ours) == lr_decay(theirs), where
    assert [p.name for p in ours.param] == [p.name for p in theirs.param], where
    if compare_params:
        assert param_messages(ours) == param_messages(theirs), where


# ----------------------------------------------------------------------------------------------
# tables


def test_every_v1_layer_type_has_a_v2_name():
    enum_names = set(caffe_pb2.V1LayerParameter.LayerType.keys()) - {"NONE"}
    assert set(V1_LAYER_TYPES) == enum_names


def test_v0_types_name_real_v1_types():
    for v0_type, v1_name in V0_LAYER_TYPES.items():
        assert v1_name in V1_LAYER_TYPES, v0_type
        caffe_pb2.V1LayerParameter.LayerType.Value(v1_name)


# ----------------------------------------------------------------------------------------------
# corpus: every old file upgrades into a clean modern net


@pytest.mark.parametrize("relative", OLD_FILES)
def test_old_corpus_file_upgrades_cleanly(relative):
    original = corpus_net(relative)
    before = original.SerializeToString()
    assert needs_upgrade(original)
    upgraded, notes = upgrade_net(original, path=relative)
    assert original.SerializeToString() == before, "the input message must not be modified"
    assert notes and all(isinstance(n, str) and n for n in notes)
    assert len(upgraded.layers) == 0
    assert len(upgraded.input) == len(upgraded.input_dim) == len(upgraded.input_shape) == 0
    assert upgraded.name == original.name
    known = set(V1_LAYER_TYPES.values()) | {"Input"}
    for layer in upgraded.layer:
        assert layer.type in known, layer.name
    # Nothing left to do, and upgrading again changes nothing.
    assert not needs_upgrade(upgraded)
    again, again_notes = upgrade_net(upgraded)
    assert again == upgraded and again_notes == []
    # The text form reads back as the same message.
    text = upgrade_text(original, path=relative)
    assert "layers {" not in text
    assert net_from_text(text) == upgraded


@pytest.mark.corpus
def test_whole_corpus_upgrades_and_needs_upgrade_agrees():
    # Every corpus file our schema reads (fork layers included) upgrades without error, and
    # needs_upgrade is true exactly when the upgrade has something to say.
    checked = 0
    for path in sorted(CORPUS.glob("*/*.prototxt")):
        net = caffe_pb2.NetParameter()
        try:
            text_format.Merge(path.read_text(encoding="utf-8", errors="replace"), net)
        except text_format.ParseError:
            continue
        upgraded, notes = upgrade_net(net, path=str(path))
        assert needs_upgrade(net) == bool(notes), path
        assert not needs_upgrade(upgraded), path
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("relative", corpus_files("bvlc_caffe/*.prototxt"))
def test_modern_bvlc_files_are_left_alone(relative):
    net = corpus_net(relative)
    if len(net.input):
        pytest.skip("uses net-level inputs, which are upgraded")
    upgraded, notes = upgrade_net(net, path=relative)
    assert notes == []
    assert upgraded == net
    assert not needs_upgrade(net)


@pytest.mark.corpus
def test_modern_batch_norm_with_zero_lr_is_left_alone():
    # BVLC's own BatchNorm example lists three "param { lr_mult: 0 }"; that is already what
    # Caffe's BatchNorm upgrade wants, so nothing changes.
    net = corpus_net("bvlc_caffe/cifar10_cifar10_full_sigmoid_train_test_bn.prototxt")
    assert any(layer.type == "BatchNorm" for layer in net.layer)
    upgraded, notes = upgrade_net(net)
    assert upgraded == net and notes == []


# ----------------------------------------------------------------------------------------------
# corpus: old and modern copies of the same BVLC models agree


def _input_layer_matches(upgraded: caffe_pb2.NetParameter, modern: caffe_pb2.NetParameter):
    # Caffe names the layer it makes from net-level inputs "input"; the hand-written modern
    # files call it after its blob ("data"); tops and shapes must agree.
    ours, theirs = upgraded.layer[0], modern.layer[0]
    assert ours.type == theirs.type == "Input"
    assert ours.name == "input"
    assert list(ours.top) == list(theirs.top)
    assert ours.input_param == theirs.input_param


@pytest.mark.parametrize("v1, modern", [
    ("bvlc_caffe_v1_2015/bvlc_alexnet_deploy.prototxt", "bvlc_caffe/bvlc_alexnet_deploy.prototxt"),
    ("bvlc_caffe_v1_2015/bvlc_reference_caffenet_train_val.prototxt",
     "bvlc_caffe/bvlc_reference_caffenet_train_val.prototxt"),
    ("bvlc_caffe_v1_2015/mnist_lenet_train_test.prototxt",
     "bvlc_caffe/mnist_lenet_train_test.prototxt"),
    ("bvlc_caffe_v1_2015/siamese_mnist_siamese_train_test.prototxt",
     "bvlc_caffe/siamese_mnist_siamese_train_test.prototxt"),
])
@pytest.mark.corpus
def test_v1_corpus_matches_modern_copy(v1, modern):
    upgraded, _ = upgrade_net(corpus_net(v1), path=v1)
    target = corpus_net(modern)
    ours, theirs = list(upgraded.layer), list(target.layer)
    if ours and ours[0].type == "Input":
        _input_layer_matches(upgraded, target)
        ours, theirs = ours[1:], theirs[1:]
    assert [layer.name for layer in ours] == [layer.name for layer in theirs]
    for mine, reference in zip(ours, theirs):
        assert_same_layer(mine, reference)


@pytest.mark.corpus
def test_v0_imagenet_deploy_matches_modern_caffenet():
    # The V0 ImageNet deploy net is CaffeNet; the modern corpus has CaffeNet's train_val net.
    # The layers they share (everything but data, accuracy, loss and the final softmax) must
    # agree in type, wiring, learning rates and parameters.  The V0 file names no fillers for
    # some layers, so fillers are not compared (see param_messages).
    upgraded, notes = upgrade_net(
        corpus_net("bvlc_caffe_v0_2014/imagenet_imagenet_deploy.prototxt"))
    modern = {layer.name: layer for layer in corpus_net(
        "bvlc_caffe/bvlc_reference_caffenet_train_val.prototxt").layer}
    assert upgraded.layer[0].type == "Input"
    assert list(upgraded.layer[0].input_param.shape[0].dim) == [10, 3, 227, 227]
    shared = [layer for layer in upgraded.layer if layer.name in modern]
    assert [layer.name for layer in shared] == [
        "conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "conv3", "relu3",
        "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "drop6", "fc7", "relu7",
        "drop7", "fc8"]
    for layer in shared:
        assert_same_layer(layer, modern[layer.name])
    assert upgraded.layer[-1].type == "Softmax"
    assert any("V0" in note for note in notes)


@pytest.mark.corpus
def test_v0_lenet_matches_modern_lenet():
    # The V0 LeNet is a training-only net; the modern one has TRAIN and TEST data layers and an
    # accuracy layer.  Compare the training data layer and the model layers.  The V0 net has
    # no weight_decay (the modern one neither) and its data layer predates LMDB, so for the
    # data layer only the moved transformation field and the batch size are compared.
    upgraded, _ = upgrade_net(corpus_net("bvlc_caffe_v0_2014/lenet_lenet_train.prototxt"))
    modern = by_key(corpus_net("bvlc_caffe/mnist_lenet_train_test.prototxt"))
    data = upgraded.layer[0]
    reference = modern[("mnist", ("TRAIN",))]
    assert data.type == "Data" and list(data.top) == list(reference.top)
    assert data.transform_param == reference.transform_param  # scale: 1/256, moved from V0
    assert data.data_param.batch_size == reference.data_param.batch_size == 64
    assert data.data_param.source == "mnist-train-leveldb"
    for layer in upgraded.layer[1:]:
        if layer.type == "SoftmaxWithLoss":
            assert list(layer.bottom) == ["ip2", "label"]
            continue
        assert_same_layer(layer, modern[(layer.name, ())])


@pytest.mark.corpus
def test_v1_age_gender_and_vgg_facts():
    age, notes = upgrade_net(corpus_net("age_gender/age_deploy.prototxt"))
    assert age.layer[0].type == "Input" and list(age.layer[0].top) == ["data"]
    assert len(age.layer[0].input_param.shape) == 1
    assert any("Input layer 'input'" in note for note in notes)
    conv1 = next(layer for layer in age.layer if layer.name == "conv1")
    assert conv1.type == "Convolution" and conv1.convolution_param.num_output == 96

    gender = upgrade_net(corpus_net("age_gender/gender_train_val_test_fold_is_0.prototxt"))[0]
    data_layers = [layer for layer in gender.layer if layer.type == "Data"]
    assert len(data_layers) == 2
    phases = {caffe_pb2.Phase.Name(layer.include[0].phase) for layer in data_layers}
    assert phases == {"TRAIN", "TEST"}
    assert any(layer.type == "SoftmaxWithLoss" for layer in gender.layer)

    original = corpus_net("vgg19_v1_deep_style/VGG_ILSVRC_19_layers_deploy.prototxt")
    vgg = upgrade_net(original)[0]
    assert len(vgg.layer) == len(original.layers) + 1  # + the Input layer
    assert [layer.name for layer in vgg.layer[1:]] == [entry.name for entry in original.layers]
    assert sum(layer.type == "Convolution" for layer in vgg.layer) == 16
    for entry, layer in zip(original.layers, vgg.layer[1:]):
        assert [p.lr_mult for p in layer.param] == list(entry.blobs_lr)


# ----------------------------------------------------------------------------------------------
# hand-written V0 nets

V0_CONV_NET = """
name: "tiny"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32
layers {
  layer { name: "pad1" type: "padding" pad: 2 }
  bottom: "data" top: "pad1"
}
layers {
  layer {
    name: "conv1" type: "conv" num_output: 8 kernelsize: 5 stride: 2 group: 1 biasterm: false
    weight_filler { type: "gaussian" std: 0.01 }
    blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  }
  bottom: "pad1" top: "conv1"
}
layers {
  layer { name: "pad2" type: "padding" pad: 1 }
  bottom: "conv1" top: "pad2"
}
layers {
  layer { name: "pool1" type: "pool" pool: AVE kernelsize: 3 stride: 2 }
  bottom: "pad2" top: "pool1"
}
layers {
  layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.001 beta: 0.5 k: 2 }
  bottom: "pool1" top: "norm1"
}
layers {
  layer {
    name: "fc" type: "innerproduct" num_output: 10 biasterm: true
    bias_filler { type: "constant" value: 0.5 }
  }
  bottom: "norm1" top: "fc"
}
layers {
  layer { name: "drop" type: "dropout" dropout_ratio: 0.25 }
  bottom: "fc" top: "fc"
}
"""


def test_v0_padding_layers_merge_into_conv_and_pool():
    net, notes = upgrade_net(net_from_text(V0_CONV_NET))
    names = [layer.name for layer in net.layer]
    assert names == ["input", "conv1", "pool1", "norm1", "fc", "drop"]
    conv1, pool1 = net.layer[1], net.layer[2]
    assert list(conv1.bottom) == ["data"] and list(conv1.top) == ["conv1"]
    assert list(conv1.convolution_param.pad) == [2]
    assert list(pool1.bottom) == ["conv1"]
    assert pool1.pooling_param.pad == 1
    assert any("padding layer 'pad1'" in note and "'conv1'" in note for note in notes)
    assert any("padding layer 'pad2'" in note and "'pool1'" in note for note in notes)


def test_v0_layer_parameters_move_into_parameter_messages():
    net = upgrade_net(net_from_text(V0_CONV_NET))[0]
    layers = {layer.name: layer for layer in net.layer}
    conv = layers["conv1"]
    assert conv.type == "Convolution"
    assert conv.convolution_param == text_format.Parse(
        'num_output: 8 bias_term: false pad: 2 kernel_size: 5 stride: 2 group: 1 '
        'weight_filler { type: "gaussian" std: 0.01 }', caffe_pb2.ConvolutionParameter())
    assert lr_decay(conv) == [(1, 1), (2, 0)]
    pool = layers["pool1"]
    assert pool.type == "Pooling"
    assert pool.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert pool.pooling_param.kernel_size == 3 and pool.pooling_param.stride == 2
    lrn = layers["norm1"]
    assert lrn.type == "LRN"
    assert (lrn.lrn_param.local_size, lrn.lrn_param.beta, lrn.lrn_param.k) == (3, 0.5, 2)
    assert lrn.lrn_param.alpha == pytest.approx(0.001)
    fc = layers["fc"]
    assert fc.type == "InnerProduct"
    assert fc.inner_product_param.num_output == 10 and fc.inner_product_param.bias_term
    assert fc.inner_product_param.bias_filler.value == 0.5
    assert not fc.param  # no blobs_lr given: no param specs
    assert layers["drop"].type == "Dropout"
    assert layers["drop"].dropout_param.dropout_ratio == 0.25


def test_v0_data_layers_and_transformation_fields():
    net, notes = upgrade_net(net_from_text("""
    layers {
      layer { name: "d" type: "data" source: "train_db" batchsize: 32 rand_skip: 5
              scale: 0.5 meanfile: "mean.binaryproto" cropsize: 24 mirror: true }
      top: "data" top: "label"
    }
    layers {
      layer { name: "img" type: "images" source: "list.txt" batchsize: 4 shuffle_images: true
              new_height: 40 new_width: 50 rand_skip: 2 }
      top: "img" top: "img_label"
    }
    layers {
      layer { name: "win" type: "window_data" source: "windows.txt" batchsize: 8
              det_fg_threshold: 0.6 det_bg_threshold: 0.4 det_fg_fraction: 0.3
              det_context_pad: 16 det_crop_mode: "square" }
      top: "win" top: "win_label"
    }
    layers {
      layer { name: "h5" type: "hdf5_data" source: "h5.txt" batchsize: 2 }
      top: "h5"
    }
    layers { layer { name: "cat" type: "concat" concat_dim: 1 }
             bottom: "data" bottom: "img" top: "cat" }
    layers { layer { name: "loss" type: "infogain_loss" source: "H.binaryproto" }
             bottom: "cat" bottom: "label" }
    layers { layer { name: "out" type: "hdf5_output" hdf5_output_param { file_name: "o.h5" } }
             bottom: "h5" }
    """))
    layers = {layer.name: layer for layer in net.layer}
    d = layers["d"]
    assert d.type == "Data"
    assert (d.data_param.source, d.data_param.batch_size, d.data_param.rand_skip) \
        == ("train_db", 32, 5)
    assert d.transform_param == text_format.Parse(
        'scale: 0.5 mean_file: "mean.binaryproto" crop_size: 24 mirror: true',
        caffe_pb2.TransformationParameter())
    img = layers["img"].image_data_param
    assert layers["img"].type == "ImageData"
    assert (img.source, img.batch_size, img.shuffle, img.new_height, img.new_width, img.rand_skip) \
        == ("list.txt", 4, True, 40, 50, 2)
    win = layers["win"].window_data_param
    assert layers["win"].type == "WindowData"
    assert (win.source, win.batch_size, win.context_pad, win.crop_mode) \
        == ("windows.txt", 8, 16, "square")
    assert (win.fg_threshold, win.bg_threshold) == (pytest.approx(0.6), pytest.approx(0.4))
    assert win.fg_fraction == pytest.approx(0.3)
    assert layers["h5"].type == "HDF5Data" and layers["h5"].hdf5_data_param.batch_size == 2
    assert layers["cat"].type == "Concat" and layers["cat"].concat_param.concat_dim == 1
    assert layers["loss"].type == "InfogainLoss"
    assert layers["loss"].infogain_loss_param.source == "H.binaryproto"
    assert layers["out"].type == "HDF5Output"
    assert layers["out"].hdf5_output_param.file_name == "o.h5"
    assert not any("dropped" in note for note in notes)


def test_v0_misplaced_field_is_dropped_with_a_note():
    net, notes = upgrade_net(net_from_text("""
    input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
    layers { layer { name: "r" type: "relu" num_output: 3 new_num: 2 } bottom: "x" top: "x" }
    """))
    relu = net.layer[1]
    assert relu.type == "ReLU"
    assert {fd.name for fd, _ in relu.ListFields()} == {"name", "type", "bottom", "top"}
    note = next(note for note in notes if "dropped V0 field" in note)
    assert "'r'" in note and "num_output" in note and "new_num" in note


def test_v0_type_names():
    for v0_type, v1_name in V0_LAYER_TYPES.items():
        net = upgrade_net(net_from_text(
            f'layers {{ layer {{ name: "l" type: "{v0_type}" }} }}'))[0]
        assert net.layer[0].type == V1_LAYER_TYPES[v1_name], v0_type
    assert V0_LAYER_TYPES["softmax_loss"] == "SOFTMAX_LOSS"
    assert V1_LAYER_TYPES["SOFTMAX_LOSS"] == "SoftmaxWithLoss"


# ----------------------------------------------------------------------------------------------
# V0 errors


def _schema_error(text: str) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        upgrade_net(net_from_text(text), path="old.prototxt")
    assert isinstance(info.value, ProtodefError)
    assert str(info.value).startswith("old.prototxt: ")
    return info.value


def test_padding_feeding_a_non_conv_layer_is_refused():
    error = _schema_error("""
    input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
    layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "x" top: "p" }
    layers { layer { name: "act" type: "relu" } bottom: "p" top: "y" }
    """)
    assert (error.layer_name, error.layer_type) == ("act", "relu")
    assert "padding layer 'pad'" in str(error)


def test_padding_with_two_tops_is_refused():
    error = _schema_error("""
    input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
    layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "x" top: "p" top: "q" }
    layers { layer { name: "c" type: "conv" num_output: 1 kernelsize: 1 } bottom: "p" top: "y" }
    """)
    assert error.layer_name == "pad"


def test_padded_layer_with_two_bottoms_is_refused():
    error = _schema_error("""
    input: "x" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
    layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "x" top: "p" }
    layers { layer { name: "c" type: "conv" num_output: 1 kernelsize: 1 }
             bottom: "p" bottom: "x" top: "y" }
    """)
    assert error.layer_name == "c" and "exactly one bottom" in str(error)


def test_v0_unknown_bottom_is_refused():
    error = _schema_error('layers { layer { name: "c" type: "relu" } bottom: "nowhere" top: "y" }')
    assert error.layer_name == "c" and "'nowhere'" in str(error)


def test_v0_unknown_type_is_refused():
    # Power and Eltwise layers came after V0; Caffe's V0 upgrade does not know them.
    error = _schema_error('layers { layer { name: "p" type: "power" } }')
    assert (error.layer_name, error.layer_type) == ("p", "power")
    assert "unknown V0 layer type" in str(error)


def test_v0_layer_without_type_is_refused():
    assert _schema_error('layers { layer { name: "n" } }').layer_name == "n"


def test_v0_net_with_a_v1_entry_is_refused():
    error = _schema_error("""
    layers { layer { name: "a" type: "data" source: "db" } top: "x" }
    layers { name: "b" type: RELU bottom: "x" top: "x" }
    """)
    assert error.layer_name == "b"


def test_mixing_layer_and_layers_is_refused():
    error = _schema_error("""
    layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }
    layers { name: "b" type: RELU bottom: "x" top: "x" }
    """)
    assert "'layer" in str(error) and "'layers" in str(error)
    assert error.found == "1 'layer' and 1 'layers'"


# ----------------------------------------------------------------------------------------------
# hand-written V1 nets


def test_v1_params_include_exclude_and_loss_weight():
    net, notes = upgrade_net(net_from_text("""
    name: "v1"
    layers {
      name: "ip" type: INNER_PRODUCT bottom: "x" top: "y"
      blobs_lr: 1 blobs_lr: 2 blobs_lr: 3 weight_decay: 0.5 weight_decay: 0
      param: "w_shared" param: "b_shared"
      blob_share_mode: PERMISSIVE
      inner_product_param { num_output: 4 }
      include { phase: TRAIN } exclude { stage: "deploy" }
    }
    layers { name: "loss" type: EUCLIDEAN_LOSS bottom: "y" bottom: "t" top: "l" loss_weight: 2 }
    layers { name: "e" type: ELTWISE bottom: "y" bottom: "y" top: "z"
             eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
    layers { name: "pw" type: POWER bottom: "z" top: "z" power_param { power: 2 } }
    layers { name: "th" type: THRESHOLD bottom: "z" top: "th" threshold_param { threshold: 0.5 } }
    """))
    ip, loss, eltwise, power, threshold = net.layer
    assert ip.type == "InnerProduct"
    assert [(p.name, p.lr_mult, p.decay_mult) for p in ip.param] == [
        ("w_shared", 1, 0.5), ("b_shared", 2, 0), ("", 3, 1)]
    assert not ip.param[2].HasField("decay_mult")  # only what V1 gave is set
    assert ip.param[0].share_mode == caffe_pb2.ParamSpec.PERMISSIVE
    assert not ip.param[1].HasField("share_mode")
    assert ip.inner_product_param.num_output == 4
    assert caffe_pb2.Phase.Name(ip.include[0].phase) == "TRAIN"
    assert list(ip.exclude[0].stage) == ["deploy"]
    assert loss.type == "EuclideanLoss" and list(loss.loss_weight) == [2]
    assert eltwise.type == "Eltwise" and list(eltwise.eltwise_param.coeff) == [1, -1]
    assert power.type == "Power" and power.power_param.power == 2
    assert threshold.type == "Threshold" and threshold.threshold_param.threshold == 0.5
    assert net.name == "v1"
    assert any("blobs_lr/weight_decay" in note and "ip" in note for note in notes)
    assert any("param names" in note for note in notes)
    assert any("blob_share_mode" in note for note in notes)


def test_v1_data_transformation_fields_move_to_transform_param():
    net, notes = upgrade_net(net_from_text("""
    layers { name: "d" type: DATA top: "data" top: "label"
             data_param { source: "db" batch_size: 8 scale: 0.25 mean_file: "m.bp" crop_size: 9
                          mirror: true }
             transform_param { scale: 7 mean_value: 104 } }
    layers { name: "i" type: IMAGE_DATA top: "i" top: "il"
             image_data_param { source: "l.txt" crop_size: 5 } }
    layers { name: "w" type: WINDOW_DATA top: "w" top: "wl"
             window_data_param { source: "w.txt" mirror: true } }
    """))
    d, i, w = net.layer
    assert d.data_param == text_format.Parse('source: "db" batch_size: 8',
                                             caffe_pb2.DataParameter())
    # The old fields win over transform_param, as in Caffe; other transform fields stay.
    assert d.transform_param == text_format.Parse(
        'scale: 0.25 mean_file: "m.bp" crop_size: 9 mirror: true mean_value: 104',
        caffe_pb2.TransformationParameter())
    assert not i.image_data_param.HasField("crop_size") and i.transform_param.crop_size == 5
    assert not w.window_data_param.HasField("mirror") and w.transform_param.mirror
    assert any("'d'" in note and "scale, mean_file, crop_size, mirror" in note for note in notes)


def test_v1_layer_without_type_is_refused():
    error = _schema_error('layers { name: "t" bottom: "x" top: "y" }')
    assert error.layer_name == "t"


def test_inputs_without_shapes_become_a_shapeless_input_layer():
    # Caffe drops inputs named without shapes (weights files list their inputs that way); as a
    # net definition the blob would then come from nowhere, so we keep it as an Input layer.
    net, notes = upgrade_net(net_from_text(
        'input: "data" layers { name: "r" type: RELU bottom: "data" top: "data" }'))
    assert [layer.type for layer in net.layer] == ["Input", "ReLU"] and not net.input
    assert list(net.layer[0].top) == ["data"]
    assert not net.layer[0].HasField("input_param")
    assert any("with no shape" in note for note in notes)


# ----------------------------------------------------------------------------------------------
# net-level inputs


MODERN_BODY = 'layer { name: "r" type: "ReLU" bottom: "a" top: "r" }\n'


def test_inputs_with_input_dim_become_an_input_layer_first():
    net, notes = upgrade_net(net_from_text(
        'input: "a" input: "b" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 '
        'input_dim: 5 input_dim: 6 input_dim: 7 input_dim: 8 ' + MODERN_BODY))
    first = net.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["a", "b"])
    assert [list(shape.dim) for shape in first.input_param.shape] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert net.layer[1].name == "r"
    assert not (net.input or net.input_dim or net.input_shape)
    assert notes == ["net-level input(s) a (1, 2, 3, 4), b (5, 6, 7, 8) became the first layer, "
                     "Input layer 'input'"]


def test_inputs_with_input_shape_become_an_input_layer():
    net, notes = upgrade_net(net_from_text(
        'input: "a" input_shape { dim: 2 dim: 5 } ' + MODERN_BODY))
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 5]
    assert len(notes) == 1


def test_input_shape_wins_over_input_dim():
    net, notes = upgrade_net(net_from_text(
        'input: "a" input_shape { dim: 2 dim: 5 } input_dim: 1 input_dim: 1 input_dim: 1 '
        'input_dim: 1 ' + MODERN_BODY))
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 5]
    assert any("ignored input_dim" in note for note in notes)


def test_input_layer_name_does_not_clash():
    net, notes = upgrade_net(net_from_text(
        'input: "a" input_shape { dim: 1 } '
        'layer { name: "input" type: "ReLU" bottom: "a" top: "b" }'))
    assert [layer.name for layer in net.layer] == ["input_1", "input"]
    assert "named 'input_1'" in notes[0]


@pytest.mark.parametrize("text, found", [
    ('input: "a" input_dim: 1 input_dim: 2 input_dim: 3 ', 3),
    ('input: "a" input: "b" input_shape { dim: 1 } ', 1),
])
def test_input_shape_counts_must_match(text, found):
    error = _schema_error(text + MODERN_BODY)
    assert error.found == found


def test_input_dim_without_input_is_refused():
    error = _schema_error('input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 4 ' + MODERN_BODY)
    assert "names no input" in str(error)


# ----------------------------------------------------------------------------------------------
# BatchNorm


def test_batch_norm_learning_rates_are_zeroed():
    net, notes = upgrade_net(net_from_text("""
    layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
            param { lr_mult: 1 name: "m" } param { lr_mult: 1 } param { decay_mult: 3 } }
    """))
    assert [(p.lr_mult, p.decay_mult, p.HasField("decay_mult")) for p in net.layer[0].param] \
        == [(0, 0, True)] * 3
    assert net.layer[0].param[0].name == "m"  # Caffe keeps the rest of each spec
    assert notes and "bn" in notes[0]
    # Unset lr_mult means 1: such a layer needs the upgrade too.
    assert needs_upgrade(net_from_text(
        'layer { name: "bn" type: "BatchNorm" param {} param {} param {} }'))


def test_batch_norm_with_other_param_counts_is_left_alone():
    net = net_from_text('layer { name: "bn" type: "BatchNorm" param { lr_mult: 1 } }')
    upgraded, notes = upgrade_net(net)
    assert upgraded == net and notes == [] and not needs_upgrade(net)


# ----------------------------------------------------------------------------------------------
# whole-net behaviour


def test_modern_net_is_returned_equal_and_as_a_copy():
    net = net_from_text('name: "m" force_backward: true ' + MODERN_BODY)
    upgraded, notes = upgrade_net(net)
    assert upgraded == net and notes == []
    assert upgraded is not net
    upgraded.layer[0].name = "changed"
    assert net.layer[0].name == "r"


def test_net_level_fields_survive_v1_upgrade():
    net = upgrade_net(net_from_text("""
    name: "keep" force_backward: true state { phase: TEST } debug_info: true
    layers { name: "r" type: RELU bottom: "x" top: "x" }
    """))[0]
    assert (net.name, net.force_backward, net.debug_info) == ("keep", True, True)
    assert net.state.phase == caffe_pb2.TEST


def test_upgrade_text_is_parseable_prototxt():
    text = upgrade_text(net_from_text(V0_CONV_NET))
    assert text.startswith('name: "tiny"')
    assert 'type: "Convolution"' in text and "layers" not in text
    assert net_from_text(text) == upgrade_net(net_from_text(V0_CONV_NET))[0]


def test_needs_upgrade():
    assert needs_upgrade(net_from_text(V0_CONV_NET))
    assert needs_upgrade(net_from_text('layers { name: "r" type: RELU }'))
    assert needs_upgrade(net_from_text('input: "a" input_shape { dim: 1 } ' + MODERN_BODY))
    assert not needs_upgrade(net_from_text(MODERN_BODY))


def test_rejects_other_messages():
    with pytest.raises(TypeError):
        upgrade_net(caffe_pb2.LayerParameter())


# ----------------------------------------------------------------------------------------------
# nets of another schema (a fork's caffe.proto compiled at run time)

SCHEMA = Path(__file__).resolve().parents[1] / "caffe_proto" / "caffe.proto"
MOBILENET_SSD = "mobilenet_ssd/voc_MobileNetSSD_deploy.prototxt"


@pytest.fixture(scope="module")
def fork():
    from protodef.forkproto import compile_proto
    return compile_proto(SCHEMA)


def fork_net(module, text: str):
    net = module.NetParameter()
    text_format.Merge(text, net)
    return net


def schema_module(proto_text: str):
    from protodef.forkproto import build_module, parse_proto
    file_proto, notes = parse_proto(proto_text, path="fork.proto")
    return build_module(file_proto, path="fork.proto", notes=notes)


@pytest.mark.parametrize("relative", ["bvlc_caffe_v1_2015/bvlc_alexnet_deploy.prototxt",
                                      "bvlc_caffe_v0_2014/imagenet_imagenet_deploy.prototxt",
                                      MOBILENET_SSD])
@pytest.mark.corpus
def test_fork_schema_net_upgrades_like_caffe_pb2(fork, relative):
    reference = corpus_net(relative)
    net = fork_net(fork, (CORPUS / relative).read_text(encoding="utf-8", errors="replace"))
    assert type(net) is not caffe_pb2.NetParameter
    assert needs_upgrade(net)
    before = net.SerializeToString()
    upgraded, notes = upgrade_net(net, path=relative)
    assert net.SerializeToString() == before
    assert type(upgraded) is type(net)
    assert not needs_upgrade(upgraded)
    assert notes == upgrade_net(reference, path=relative)[1]
    assert upgrade_text(net, path=relative) == upgrade_text(reference, path=relative)


def test_fork_schema_small_nets_upgrade_like_caffe_pb2(fork):
    for text in (V0_CONV_NET, 'input: "a" ' + MODERN_BODY, """
    layers { name: "d" type: DATA top: "x" data_param { source: "s" scale: 0.5 mirror: true }
             blobs_lr: 1 blob_share_mode: PERMISSIVE param: "w" include { phase: TRAIN } }
    """, 'layer { name: "bn" type: "BatchNorm" param { lr_mult: 1 } param { } param { } }'):
        reference = net_from_text(text)
        assert upgrade_text(fork_net(fork, text)) == upgrade_text(reference), text
        assert upgrade_net(fork_net(fork, text))[1] == upgrade_net(reference)[1], text


@pytest.mark.corpus
def test_read_net_with_fork_schema_upgrades_net_level_inputs():
    from protodef.api import read_net
    path = CORPUS / MOBILENET_SSD
    net = read_net(str(path), proto=str(SCHEMA), init="none")
    plain = read_net(str(path), init="none")
    assert [i.value.blob for i in net.inputs] == ["data"]
    assert net.shape(net.inputs[0].value) == (1, 3, 300, 300)
    assert [(layer.name, layer.type) for layer in net.layers()] == \
        [(layer.name, layer.type) for layer in plain.layers()]


_SCHEMA_HEAD = """
syntax = "proto2";
message BlobShape { repeated int64 dim = 1 [packed = true]; }
"""


def _fork_schema_error(proto_text: str, net_text: str) -> SchemaError:
    net = fork_net(schema_module(_SCHEMA_HEAD + proto_text), net_text)
    with pytest.raises(SchemaError) as info:
        upgrade_net(net, path="old.prototxt")
    assert str(info.value).startswith("old.prototxt: ")
    return info.value


def test_fork_without_v1_layer_parameter_is_refused():
    # An old schema whose 'layers' are today's LayerParameter (string type) cannot be read as V1.
    error = _fork_schema_error("""
    message LayerParameter { optional string name = 1; optional string type = 2; }
    message NetParameter { repeated LayerParameter layer = 100;
                           repeated LayerParameter layers = 2; }
    """, 'layers { name: "r" type: "ReLU" }')
    assert "no enum field 'type'" in str(error)


def test_fork_without_layer_field_cannot_take_v1_layers():
    error = _fork_schema_error("""
    message V1LayerParameter { optional string name = 4; enum LayerType { NONE = 0; RELU = 18; }
                               optional LayerType type = 5; }
    message NetParameter { repeated V1LayerParameter layers = 2; }
    """, 'layers { name: "r" type: RELU }')
    assert "NetParameter has no field 'layer'" in str(error)


def test_fork_without_input_param_cannot_take_input_shapes():
    proto = """
    message LayerParameter { optional string name = 1; optional string type = 2;
                             repeated string top = 4; }
    message NetParameter { repeated LayerParameter layer = 100; repeated string input = 3;
                           repeated BlobShape input_shape = 8; repeated int32 input_dim = 4; }
    """
    error = _fork_schema_error(proto, 'input: "x" input_dim: 1 input_dim: 3 input_dim: 2 '
                                      'input_dim: 2')
    assert "LayerParameter has no field 'input_param'" in str(error)
    # Inputs without shapes need no input_param: they still become a shape-less Input layer.
    module = schema_module(_SCHEMA_HEAD + proto)
    upgraded, _ = upgrade_net(fork_net(module, 'input: "x"'))
    assert [(layer.name, layer.type, list(layer.top)) for layer in upgraded.layer] == \
        [("input", "Input", ["x"])]


def test_fork_v1_enum_without_the_v0_type_is_refused():
    error = _fork_schema_error("""
    message V0LayerParameter { optional string name = 1; optional string type = 2; }
    message V1LayerParameter { optional string name = 4; enum LayerType { NONE = 0; RELU = 18; }
                               optional LayerType type = 5; repeated string bottom = 2;
                               repeated string top = 3; optional V0LayerParameter layer = 1; }
    message NetParameter { repeated V1LayerParameter layers = 2; repeated string input = 3; }
    """, 'input: "x" layers { layer { name: "s" type: "sigmoid" } bottom: "x" top: "y" }')
    assert "has no value SIGMOID" in str(error)
    assert (error.layer_name, error.layer_type) == ("s", "sigmoid")


def test_fork_net_needs_upgrade(fork):
    assert needs_upgrade(fork_net(fork, 'layers { name: "r" type: RELU }'))
    assert needs_upgrade(fork_net(fork, 'input: "a" ' + MODERN_BODY))
    assert not needs_upgrade(fork_net(fork, MODERN_BODY))
