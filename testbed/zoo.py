"""The codec zoo: every codec kind the testbed knows, registered once.

A kind is a model-card class and a runtime class following :class:`testbed.core.codecs.Codec`.
To add one, write both in a package of its own (as ``codec/`` and ``akb/``) and add one
``register_codec`` line here; every command, GNU Radio block and agent then takes it.
"""
from __future__ import annotations

from .akb.card import AkbCard
from .akb.runtime import AkbCodec
from .codec.modelcard import ModelCard
from .codec.runtime import OnnxCodec
from .core.card import CARD_NAME, ModelCardError
from .core.codecs import (Codec, Encoded, ModelError, Rate, codec_kinds, load_card, open_codec, register_codec,
                          resolve_model_dir, write_card)

__all__ = ["CARD_NAME", "Codec", "Encoded", "ModelCardError", "ModelError", "Rate", "codec_kinds", "load_card",
           "open_codec", "register_codec", "resolve_model_dir", "write_card"]

register_codec(ModelCard, OnnxCodec)     # jscc-v1: fixed-rate deep JSCC
register_codec(AkbCard, AkbCodec)        # akb-jscc: variable-length, channel and source KBs
