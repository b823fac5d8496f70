"""Read an ONNX file's graph without its weights.

A ResNet18 file is 45 MB, almost all of it weight payloads that the IR never
looks at (it needs the weights' *shapes*). Parsing it all with ``onnx.load`` costs
tens of ms; walking the protobuf wire format and leaving big tensor payloads
behind costs one. The result is a normal ``onnx.ModelProto`` whose large
initializers keep name, type and dims but no data, which is all that
``onnx.shape_inference`` needs from them.
"""

from __future__ import annotations

#: initializers whose payload is larger than this lose it (shape constants are tiny)
MAX_KEPT_PAYLOAD = 1024

_DATA_FIELDS = frozenset({4, 5, 6, 7, 9, 10, 11, 13})  # float/int32/string/int64/raw/double/uint64/external


class SkimError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf, pos: int) -> tuple[int, int]:
    try:
        b = buf[pos]
    except IndexError:
        raise SkimError("truncated varint") from None
    if b < 0x80:  # most keys and lengths fit one byte
        return b, pos + 1
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise SkimError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise SkimError("varint too long")


def _fields(buf, start: int, end: int):
    """Yield (field_number, wire_type, field_start, payload_start, payload_end)."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == 0:
            _, pos2 = _varint(buf, pos)
            yield field, wt, fstart, pos, pos2
            pos = pos2
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise SkimError(f"field {field} runs past the end of its message")
            yield field, wt, fstart, pos, pos + n
            pos += n
        elif wt == 1:
            yield field, wt, fstart, pos, pos + 8
            pos += 8
        elif wt == 5:
            yield field, wt, fstart, pos, pos + 4
            pos += 4
        else:
            raise SkimError(f"unsupported wire type {wt}")
        if pos > end:
            raise SkimError("message truncated")


def _encode_len(field: int, payload: bytes) -> bytes:
    return _encode_varint((field << 3) | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _skim_tensor(buf, start: int, end: int) -> bytes:
    if end - start <= MAX_KEPT_PAYLOAD:
        return bytes(buf[start:end])
    out = bytearray()
    for field, _, fstart, _, pend in _fields(buf, start, end):
        if field not in _DATA_FIELDS:
            out += buf[fstart:pend]
    return bytes(out)


def _skim_graph(buf, start: int, end: int) -> bytes:
    out = bytearray()
    run = start  # the fields since the last skimmed initializer are copied in one piece
    for field, wt, fstart, pstart, pend in _fields(buf, start, end):
        if field == 5 and wt == 2 and pend - pstart > MAX_KEPT_PAYLOAD:  # a big initializer
            out += buf[run:fstart]
            out += _encode_len(5, _skim_tensor(buf, pstart, pend))
            run = pend
    out += buf[run:end]
    return bytes(out)


def skim_model_bytes(buf) -> bytes:
    """Serialized ModelProto -> the same model, serialized, without big weight payloads.

    Raises:
        SkimError: the bytes are not a well-formed ModelProto (truncated, corrupt).
    """
    out = bytearray()
    seen_graph = False
    for field, wt, fstart, pstart, pend in _fields(buf, 0, len(buf)):
        if field == 7 and wt == 2:
            out += _encode_len(7, _skim_graph(buf, pstart, pend))
            seen_graph = True
        else:
            out += buf[fstart:pend]
    if not seen_graph:
        raise SkimError("no graph in the model")
    return bytes(out)
