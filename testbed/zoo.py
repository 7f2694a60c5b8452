"""The codec zoo: every codec kind the testbed knows, registered once.

A kind is a model-card class and a runtime class following :class:`testbed.core.codecs.Codec`.
To add one, write both in a package of its own (as ``codec/`` and ``akb/``) and add one
``register_codec`` line here; every command, GNU Radio block and agent then takes it. Codecs
that need no model folder (the digital baselines of ``digital/``) register by name with
``register_builtin``.
"""
from __future__ import annotations

from .akb.card import AkbCard
from .akb.runtime import AkbCodec
from .codec.modelcard import ModelCard
from .codec.runtime import OnnxCodec
from .core.card import CARD_NAME, ModelCardError
from .core.codecs import (Codec, Encoded, ModelError, Rate, builtin_codecs, codec_kinds, load_card, open_codec,
                          register_builtin, register_codec, resolve_model_dir, write_card)
from .digital.runtime import SOURCES as DIGITAL_CODECS
from .digital.runtime import DigitalCodec

__all__ = ["CARD_NAME", "Codec", "Encoded", "ModelCardError", "ModelError", "Rate", "builtin_codecs", "codec_kinds",
           "load_card", "open_codec", "register_builtin", "register_codec", "resolve_model_dir", "write_card"]

register_codec(ModelCard, OnnxCodec)     # jscc-v1: fixed-rate deep JSCC
register_codec(AkbCard, AkbCodec)        # akb-jscc: variable-length, channel and source KBs
for _name in DIGITAL_CODECS:             # jpeg2000-ldpc, jpeg-ldpc: separation baselines, no model folder
    register_builtin(_name, lambda _n=_name, **kw: DigitalCodec(_n, **kw))
