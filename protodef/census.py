"""The census of Caffe layer types: every type BVLC Caffe registers, every type OpenCV 4.x's dnn module builds
from a Caffe model, and the deploy-time layers of the best-known forks, each with where it comes from and,
where protodef does not lower it, why.

Read from the sources: BVLC caffe and each fork's REGISTER_LAYER_CLASS lines and caffe.proto; OpenCV's
modules/dnn/src/init.cpp (its layer registry), caffe/caffe_importer.cpp and opencv-caffe.proto, with each
name checked against cv2.dnn.readNetFromCaffe 4.14. Whether a type is implemented is not written here: it is
read from the layer registry when the table is rendered, so docs/layers.md cannot claim a layer that is not
there (tests/test_census_layers.py checks that the types marked "not yet" really are not).
"""
from __future__ import annotations

from dataclasses import dataclass

BVLC = "BVLC"
SSD = "SSD (weiliu89/caffe, ssd branch)"
FASTER_RCNN = "py-faster-rcnn (rbgirshick/caffe-fast-rcnn)"
RFCN = "R-FCN (daijifeng001/caffe-rfcn)"
FLOWNET = "FlowNet 2 (lmb-freiburg/flownet2)"
DEEPLAB = "DeepLab v2 / PSPNet (hszhao/PSPNet)"
SEGNET = "SegNet (alexgkendall/caffe-segnet)"
SPHEREFACE = "SphereFace (wy1iu/sphereface)"
AMSOFTMAX = "AM-Softmax (happynear/caffe-windows, ms branch)"
ARCFACE = "arcface-caffe (xialuxi/arcface-caffe)"
YOLO = "MobileNet-YOLO (eric612/MobileNet-YOLO)"
OPENPOSE = "OpenPose training (CMU-Perceptual-Computing-Lab/caffe_train)"
SHUFFLENET = "ShuffleNet (farmingyard)"
SENET = "SENet (hujie-frank)"
OPENCV = "OpenCV dnn"

# Why a type is not lowered. "not yet" means it has a deploy-time meaning and protodef should lower it.
TRAINING_ONLY = "refused: training-only"
EVALUATION_ONLY = "refused: evaluation-only"
DATA_ONLY = "refused: data-only"
FILE_OUTPUT = "refused: writes files"
NOT_CAFFE = "refused: not a Caffe layer"
NOT_YET = "not yet"

_NEEDS_LABEL = "its output depends on the ground-truth label, which a deploy net does not have"


@dataclass(frozen=True)
class CensusEntry:
    type: str
    origin: str
    refusal: str | None = None      # None: protodef lowers it (the registry must say so)
    reason: str = ""                # why it is refused; for a lowered type, what to know (may be empty)

    def why_refused(self) -> str:
        """'DataAugmentation (FlowNet 2) is not supported yet: <reason>', for a refused type's error."""
        kind = "not supported yet" if self.refusal == NOT_YET else (self.refusal or "").removeprefix("refused: ")
        return f"{self.type} ({self.origin.split(' (')[0]}) is {kind}: {self.reason}"


def _implemented(type_name: str, origin: str, note: str = "") -> CensusEntry:
    return CensusEntry(type_name, origin, None, note)


def _refused(type_name: str, origin: str, refusal: str, reason: str) -> CensusEntry:
    return CensusEntry(type_name, origin, refusal, reason)


_BVLC_LOWERED = ("AbsVal", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip", "Concat", "Convolution",
                 "Crop", "Deconvolution", "Dropout", "ELU", "Eltwise", "Embed", "Exp", "Flatten", "Im2col",
                 "InnerProduct", "LRN", "LSTMUnit", "Log", "MVN", "PReLU", "Parameter", "Pooling", "Power",
                 "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid", "Silence", "Slice", "Softmax", "Split",
                 "Swish", "TanH", "Threshold", "Tile")
_BVLC_DATA = ("Data", "DummyData", "HDF5Data", "ImageData", "Input", "MemoryData", "WindowData")
_BVLC_LOSSES = ("Accuracy", "ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss",
                "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "SoftmaxWithLoss")

CENSUS: tuple[CensusEntry, ...] = (
    *(_implemented(t, BVLC) for t in _BVLC_LOWERED + _BVLC_DATA + _BVLC_LOSSES),
    _refused("Filter", BVLC, NOT_YET, "its output batch size is the number of non-zero selector values, known "
             "only at run time"),
    _refused("HDF5Output", BVLC, FILE_OUTPUT, "writes its inputs to an HDF5 file and has no outputs"),
    *(_implemented(t, origin, "without expose_hidden the state starts at 0, as on Caffe's first forward pass "
                   "(Caffe then carries the last step's state into the next pass; a converted model does not)")
      for t, origin in (("LSTM", BVLC + "; " + OPENCV), ("RNN", BVLC))),
    _refused("Python", BVLC, NOT_CAFFE, "runs user Python code, which protodef never imports; register a "
             "lowering with protodef.register_layer"),
    # SSD
    *(_implemented(t, SSD) for t in ("AnnotatedData", "DetectionOutput", "MultiBoxLoss", "Normalize", "Permute",
                                      "PriorBox", "SmoothL1Loss")),
    _refused("DetectionEvaluate", SSD + "; " + YOLO, EVALUATION_ONLY, "scores detections against ground truth "
             "for mAP"),
    _refused("VideoData", SSD, DATA_ONLY, "reads frames from a camera or a video file; a deploy net declares an "
             "Input instead"),
    # Faster R-CNN, R-FCN and their C++ ports
    _implemented("ROIPooling", FASTER_RCNN + "; " + RFCN + "; " + OPENCV),
    _implemented("PSROIPooling", RFCN + "; " + OPENCV, "psroi_pooling_param as in R-FCN's caffe.proto (caffe_proto/FORKS.md)"),
    _refused("BoxAnnotatorOHEM", RFCN, TRAINING_ONLY, "picks hard examples for the loss from the labels"),
    _refused("Proposal", "C++ ports of py-faster-rcnn's proposal layer; " + OPENCV, NOT_YET,
             "anchor decoding, top-k and NMS to a data-dependent number of rois; proposal_param is not in "
             "protodef's schema"),
    _refused("ROIAlign", "Mask R-CNN ports (several, each with its own roi_align_param)", NOT_YET,
             "no canonical definition: the ports disagree on sampling points and the half-pixel offset"),
    # FlowNet 2
    *(_implemented(t, FLOWNET) for t in ("ChannelNorm", "Correlation1D", "NegReLU")),
    *(_implemented(t, FLOWNET + "; " + OPENCV) for t in ("Accum", "Correlation")),
    _implemented("FlowWarp", FLOWNET + "; " + OPENCV, "flow_warp_param as in FlowNet 2's caffe.proto (caffe_proto/FORKS.md)"),
    _implemented("Resample", FLOWNET, "resample_param as in FlowNet 2's caffe.proto (caffe_proto/FORKS.md)" + " (or give a second input "
                 "for the size); FlowNet 2 computes it on the GPU only"),
    _refused("DataAugmentation", FLOWNET + "; " + OPENCV, NOT_YET, "at test time it subtracts a mean learned "
             "during training (its blobs) after an optional crop; augmentation_param (a 60-field message) is not "
             "in protodef's schema"),
    _implemented("Mean", FLOWNET, "the per-channel value form; the file form (a mean image read from disk when "
                 "the net is set up) is refused"),
    _refused("Downsample", FLOWNET, TRAINING_ONLY, "FlowNet's nets use it only to shrink the ground-truth flow to "
             "each loss's scale"),
    *(_refused(t, FLOWNET, TRAINING_ONLY, "random augmentation or a loss, computed only while training")
      for t in ("BlackAugmentation", "FlowAugmentation", "GenerateAugmentationParameters", "L1Loss", "LpqLoss")),
    *(_refused(t, FLOWNET, DATA_ONLY, "reads training data or files; a deploy net declares an Input instead")
      for t in ("CustomData", "DisparityData", "FloatReader", "ImgReader")),
    *(_refused(t, FLOWNET, FILE_OUTPUT, "writes its input to an image or flow file")
      for t in ("FLOWriter", "FloatWriter", "ImgWriter", "PFMWriter")),
    # DeepLab v2 and PSPNet
    _implemented("Interp", DEEPLAB + "; " + OPENCV),
    _implemented("BN", DEEPLAB + "; " + SEGNET),
    _implemented("SpatialProduct", DEEPLAB),
    _refused("DenseCRF", DEEPLAB, NOT_YET, "mean-field inference of a fully connected CRF over a permutohedral "
             "lattice; no ONNX or torch operator comes close, and dense_crf_param is not in protodef's schema"),
    *(_refused(t, DEEPLAB, NOT_YET, "edge-aware recursive filtering (domain_transform_param is not in "
               "protodef's schema)") for t in ("DomainTransform", "DomainTransformForwardOnly")),
    *(_refused(t, DEEPLAB, TRAINING_ONLY, _NEEDS_LABEL)
      for t in ("AdaptiveBiasChannel", "BiasChannel", "UniqueLabel")),
    _refused("SegAccuracy", DEEPLAB, EVALUATION_ONLY, "scores a segmentation against its label"),
    *(_refused(t, DEEPLAB, DATA_ONLY, "reads training images or .mat files; a deploy net declares an Input "
               "instead") for t in ("ImageSegData", "MatRead")),
    _refused("MatWrite", DEEPLAB, FILE_OUTPUT, "writes its input to .mat files"),
    # SegNet
    *(_implemented(t, SEGNET) for t in ("DenseImageData", "Upsample")),
    # Face recognition with margins: the margin needs the label, so deploy nets stop at the feature layer
    _refused("MarginInnerProduct", SPHEREFACE, TRAINING_ONLY, _NEEDS_LABEL + " (sphereface_deploy.prototxt ends "
             "at fc5)"),
    _refused("LabelSpecificAdd", AMSOFTMAX, TRAINING_ONLY, _NEEDS_LABEL),
    _refused("LargeMarginInnerProduct", AMSOFTMAX, TRAINING_ONLY, _NEEDS_LABEL),
    _implemented("Flip", AMSOFTMAX, "flip_param as in caffe-windows's caffe.proto (caffe_proto/FORKS.md)"),
    *(_refused(t, ARCFACE, TRAINING_ONLY, _NEEDS_LABEL) for t in ("AdaCosAddmScale", "CombinedMargin",
                                                                  "CosinAddm")),
    _implemented("NormL2", ARCFACE),
    _refused("Normalize (normalize_param)", AMSOFTMAX, NOT_YET, "caffe-windows' L2 normalisation shares SSD's type "
             "name; only its normalize_param, not in protodef's schema, tells them apart"),
    # MobileNet-YOLO
    *(_implemented(t, YOLO) for t in ("DepthwiseConvolution", "ReLU6", "Reorg", "YoloDetectionOutput",
                                      "Yolov3DetectionOutput")),
    *(_refused(t, YOLO, TRAINING_ONLY, "a loss, or training-time guidance from the ground-truth boxes")
      for t in ("AssistedExcitation", "GaussianYolov3", "RegionLoss", "YoloSeg", "Yolov3")),
    _refused("SegmentationEvaluate", YOLO, EVALUATION_ONLY, "scores a segmentation against its label"),
    _refused("LaneData", YOLO, DATA_ONLY, "reads annotated training images; a deploy net declares an Input "
             "instead"),
    # OpenPose (deploy nets use BVLC layers only)
    _refused("CPMData", OPENPOSE, DATA_ONLY, "reads annotated training images; a deploy net declares an Input "
             "instead"),
    # Others seen in the corpus
    _implemented("ConvolutionDepthwise", SHUFFLENET + "; " + OPENCV),
    _implemented("ShuffleChannel", SHUFFLENET + "; " + OPENCV),
    _implemented("Axpy", SENET + "; " + OPENCV),
    _implemented("Mish", OPENCV + "; YOLOv4 Caffe ports"),
    # OpenCV's own registry: names no Caffe model writes, or layers only its other importers can configure
    *(_refused(t, OPENCV, NOT_CAFFE, f"OpenCV's second name for {same}") for t, same in (
        ("NormalizeBBox", "SSD's Normalize"), ("ChannelsPReLU", "PReLU"), ("SoftMax", "Softmax"),
        ("Identity", "a layer that passes its input on"))),
    *(_refused(t, OPENCV, NOT_CAFFE, "only OpenCV's Darknet, TensorFlow, Torch or ONNX importers can configure "
               "it (its settings have no field in a Caffe schema)")
      for t in ("CropAndResize", "MaxUnpool", "Padding", "PriorBoxClustered", "Region", "Resize", "Shift")),
)

# OpenCV 4.x registers these too, for its ONNX and TensorFlow importers: element-wise functions and tensor
# operations with no Caffe layer of that name in BVLC or any fork above. They are outside the census.
OPENCV_IMPORTER_OPERATORS = (
    "Acos", "Acosh", "Arg", "Asin", "Asinh", "Atan", "Atanh", "Attention", "Cast", "Ceil", "Celu", "Compare",
    "Const", "Cos", "Cosh", "CumSum", "DepthToSpace", "Dequantize", "Einsum", "Erf", "Expand", "Floor", "GRU",
    "Gather", "GatherElements", "Gelu", "GeluApproximation", "Gemm", "GroupNormalization", "HardSigmoid",
    "HardSwish", "InstanceNormalization", "LayerNormalization", "MatMul", "NaryEltwise", "Not", "Quantize",
    "Reciprocal", "Reduce", "Requantize", "Round", "Scatter", "ScatterND", "Selu", "Shrink", "Sign", "Sin",
    "Sinh", "Softplus", "Softsign", "SpaceToDepth", "Sqrt", "Tan", "ThresholdedRelu")
