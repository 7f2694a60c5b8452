"""Conversions between Python values and PMTs for the message-passing blocks."""
from __future__ import annotations

import numpy as np
import pmt


def to_pmt(v):
    if isinstance(v, np.ndarray):
        if np.iscomplexobj(v):
            return pmt.init_c32vector(v.size, v.astype(np.complex64).tolist())
        if v.dtype == np.uint8:
            return pmt.init_u8vector(v.size, v.tolist())
        return pmt.init_f32vector(v.size, v.astype(np.float32).tolist())
    if isinstance(v, dict):
        d = pmt.make_dict()
        for k, x in v.items():
            d = pmt.dict_add(d, pmt.intern(str(k)), to_pmt(x))
        return d
    return pmt.to_pmt(v)


def dict_to_py(d) -> dict:
    if pmt.is_null(d) or not pmt.is_dict(d):
        return {}
    out = {}
    items = pmt.dict_items(d)
    while not pmt.is_null(items):
        kv = pmt.car(items)
        out[pmt.symbol_to_string(pmt.car(kv))] = value_to_py(pmt.cdr(kv))
        items = pmt.cdr(items)
    return out


def value_to_py(v):
    if pmt.is_c32vector(v):
        return np.array(pmt.c32vector_elements(v), np.complex64)
    if pmt.is_f32vector(v):
        return np.array(pmt.f32vector_elements(v), np.float32)
    if pmt.is_u8vector(v):
        return np.array(pmt.u8vector_elements(v), np.uint8)
    if pmt.is_dict(v) and not pmt.is_pair(v):
        return dict_to_py(v)
    return pmt.to_python(v)


def pdu(meta: dict, data: np.ndarray):
    return pmt.cons(to_pmt(meta), to_pmt(np.asarray(data)))


def split_pdu(msg) -> tuple[dict, np.ndarray]:
    if not pmt.is_pair(msg):
        raise ValueError("message is not a PDU")
    return dict_to_py(pmt.car(msg)), value_to_py(pmt.cdr(msg))


def image_from_pdu(msg):
    """(metadata, [H, W, 3] uint8 image) of an image PDU (metadata ``height``, ``width``)."""
    meta, data = split_pdu(msg)
    return meta, np.asarray(data, np.uint8).reshape(int(meta["height"]), int(meta["width"]), 3)
