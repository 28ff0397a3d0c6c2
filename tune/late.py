"""An experiment, not shipped: a late-interaction cross-encoder on e5-small, trained listwise.

The pair is read as e5 reads its two texts, `<s>query: q</s>` then `<s>passage: p</s>` (the tokenizer's
second `</s>` becomes the passage's `<s>`, positions restart for the passage), attention stays within each
half in the first 12 - `open_layers` layers and spans both in the last `open_layers`, and the score is the
cosine of the two halves' mean states. With `open_layers` 0 it is exactly e5's own similarity; opening the
last layers lets question and passage read each other. The lower layers are not trained, so their states are
computed once per passage and per question, and only the open layers train: listwise cross-entropy over
(positive, `negatives` hard negatives from hybrid search, 1 random one), a learned temperature, AdamW.
`--keep-e5` adds e5's untouched similarity (the same layers kept apart) to the opened layers' score, weighted
by a learned factor starting at 0.1, so training starts from the bi-encoder.

Reports hit@1 / hit@5 / MRR@10 of hybrid, the score alone ("pure") and its RRF with the fused order ("rrf",
as `MIANJING_RERANK_FUSION=rrf` does), on the held-out bundled questions (tune/train.py's split) before and
after each epoch, and on the dev set's answerable questions by kind at the end (the dev set is only scored,
never trained on). The README ("The reranker", late interaction) has the figures of
`python -m tune.late` and `python -m tune.late --keep-e5`: it learns on the held-out bundled questions and
stays below hybrid on the dev set, so nothing is saved.

    python -m tune.late [--open-layers 1] [--epochs 2] [--lr 3e-5] [--negatives 7] [--keep-e5]

Does not: save a model, load into `sentence_transformers.CrossEncoder`, or change settings.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from retriever.fuse import rrf
from tune import train

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = 20  # hybrid hits reordered, as MIANJING_RERANK_CANDIDATES
QUERY_TOKENS, PASSAGE_TOKENS = 32, 224  # the halves' lengths (a pair of at most 256 tokens)

Ranked = tuple[str, list[str], list[bool], str]  # question, candidate ids, relevant?, kind


def pair_masks(lengths: Sequence[tuple[int, int]], total: int) -> tuple[Any, Any]:
    """Additive attention masks (batch, 1, total, total) for sequences of (query, passage) halves padded
    to `total`: "apart" lets a token see its own half only, "joint" every real token."""
    import torch

    neg = torch.finfo(torch.float32).min
    apart = torch.full((len(lengths), 1, total, total), neg)
    joint = torch.full((len(lengths), 1, total, total), neg)
    for i, (q, p) in enumerate(lengths):
        apart[i, 0, :q, :q] = 0.0
        apart[i, 0, q : q + p, q : q + p] = 0.0
        joint[i, 0, :, : q + p] = 0.0
    return apart, joint


def halves_cosine(states: Any, lengths: Sequence[tuple[int, int]]) -> Any:
    """Cosine of the mean states of each sequence's query half and passage half."""
    import torch

    rows = []
    for i, (q, p) in enumerate(lengths):
        rows.append(
            torch.nn.functional.cosine_similarity(states[i, :q].mean(0), states[i, q : q + p].mean(0), dim=0)
        )
    return torch.stack(rows)


class LateScorer:
    """e5 kept apart below `open_layers`, joint above; lower states cached per text."""

    def __init__(self, folder: Path, open_layers: int, keep_e5: bool) -> None:
        import copy

        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = AutoModel.from_pretrained(folder)
        for module in self.encoder.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        layers = self.encoder.encoder.layer
        self.low = len(layers) - open_layers
        self.top = layers[self.low :]
        self.e5_top = copy.deepcopy(self.top) if keep_e5 else None
        if self.e5_top is not None:
            for param in self.e5_top.parameters():
                param.requires_grad = False
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(50.0)))
        self.weight = torch.nn.Parameter(torch.tensor(0.1))
        self.states: dict[str, Any] = {}

    def cache(self, texts: Sequence[str], prefix: str, max_length: int, batch: int = 16) -> None:
        """The states after the lower layers of `prefix + text`, for texts not yet cached."""
        import torch

        todo = [t for t in dict.fromkeys(texts) if prefix + t not in self.states]
        with torch.no_grad():
            for at in range(0, len(todo), batch):
                part = todo[at : at + batch]
                enc = self.tokenizer(
                    [prefix + t for t in part], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt",
                )  # fmt: skip
                mask = enc["attention_mask"]
                additive = torch.zeros(mask.shape[0], 1, 1, mask.shape[1])
                additive[mask[:, None, None, :] == 0] = torch.finfo(torch.float32).min
                h = self.encoder.embeddings(input_ids=enc["input_ids"])
                for layer in self.encoder.encoder.layer[: self.low]:
                    h = layer(h, additive)
                for text, states, n in zip(part, h, mask.sum(1).tolist(), strict=True):
                    self.states[prefix + text] = states[:n].clone()

    def scores(self, question: str, passages: Sequence[str]) -> Any:
        """Relevance of each passage to the question (cached states needed for all of them)."""
        import torch

        q = self.states["query: " + question]
        halves = [self.states["passage: " + p] for p in passages]
        lengths = [(len(q), len(p)) for p in halves]
        total = max(a + b for a, b in lengths)
        h = torch.zeros(len(halves), total, q.shape[1])
        for i, p in enumerate(halves):
            h[i, : len(q)] = q
            h[i, len(q) : len(q) + len(p)] = p
        apart, joint = pair_masks(lengths, total)
        opened = h
        for layer in self.top:
            opened = layer(opened, joint)
        score = halves_cosine(opened, lengths)
        if self.e5_top is not None:
            kept = h
            for layer in self.e5_top:
                kept = layer(kept, apart)
            score = halves_cosine(kept, lengths) + self.weight * score
        return score

    def parameters(self) -> list[Any]:
        return list(self.top.parameters())


def rank_of(order: Sequence[int], relevant: Sequence[bool]) -> int | None:
    return next((n for n, i in enumerate(order, 1) if relevant[i]), None)


def rrf_order(scores: Sequence[float]) -> list[int]:
    """RRF of the score's ranking and the fused order the candidates arrive in (`retriever.fuse.rrf`, as
    rerank mode fuses them); ties keep the arrival order."""
    by_score = sorted(range(len(scores)), key=lambda i: -scores[i])
    fused = rrf([list(range(len(scores))), by_score])
    return sorted(fused, key=lambda i: -fused[i])


def evaluate(scorer: LateScorer, data: Sequence[Ranked], texts: dict[str, str]) -> dict[str, Any]:
    import torch

    found: dict[str, list[int | None]] = defaultdict(list)
    with torch.no_grad():
        for question, ids, relevant, kind in data:
            scores = scorer.scores(question, [texts[i] for i in ids]).tolist()
            ranks = {
                "hybrid": rank_of(range(len(ids)), relevant),
                "pure": rank_of(sorted(range(len(ids)), key=lambda i: -scores[i]), relevant),
                "rrf": rank_of(rrf_order(scores), relevant),
            }
            for name, rank in ranks.items():
                found[name].append(rank)
                if kind:
                    found[f"{kind}:{name}"].append(rank)
    return {name: train._metrics(ranks) for name, ranks in found.items()}


def ranked(searcher: Any, questions: Sequence[tuple[str, Callable[[Any], bool], str]]) -> list[Ranked]:
    out = []
    for question, is_relevant, kind in questions:
        hits = searcher.search(question, mode="hybrid", k=CANDIDATES).hits
        out.append((question, [h.chunk.id for h in hits], [is_relevant(h.chunk) for h in hits], kind))
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from assistant.retrieval import Searcher
    from assistant.settings import from_env
    from eval.command import DEV
    from eval.dataset import load_dataset, relevant
    from retriever.e5 import ensure_e5
    from tune import negatives as negatives_

    parser = argparse.ArgumentParser(prog="python -m tune.late", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=REPO / "tune" / "data" / "questions.jsonl")
    parser.add_argument("--open-layers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--negatives", type=int, default=7)
    parser.add_argument("--batch", type=int, default=4, help="questions per step")
    parser.add_argument("--keep-e5", action="store_true")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args(argv)
    if not args.questions.is_file():
        print(f"tune.late: error: no questions file {args.questions}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    began = time.perf_counter()
    searcher = Searcher(from_env())
    chunks = {c.id: c for c in searcher.index.chunks}
    answering = [c for c in searcher.index.chunks if c.has_answer]
    train_rows, held_rows = train.split(train.read_rows(args.questions), 0.1, train.TrainSettings().seed)
    groups: list[tuple[str, list[str]]] = []
    for row in train_rows:
        positive = chunks.get(row["passage"])
        if positive is None:
            continue
        hits = searcher.search(row["question"], mode="hybrid", k=negatives_.DEPTH).hits
        hard = negatives_.negatives(positive, (h.chunk for h in hits), k=args.negatives)
        easy = [
            c for c in negatives_.easy(positive, answering, row["question"], k=1 + len(hard)) if c not in hard
        ]
        groups.append((row["question"], [positive.id] + [c.id for c in hard + easy[:1]]))

    def row_rule(row: dict[str, Any]) -> Callable[[Any], bool]:
        return lambda chunk: train._relevant(chunk, row)

    def item_rule(item: Any) -> Callable[[Any], bool]:
        return lambda chunk: relevant(item, chunk.source, chunk.start, chunk.end)

    held = ranked(searcher, [(r["question"], row_rule(r), "") for r in held_rows])
    items, _ = load_dataset(DEV, searcher.settings.corpus)
    dev = ranked(searcher, [(i.question, item_rule(i), i.kind) for i in items if i.answerable])
    scorer = LateScorer(ensure_e5(searcher.settings.cache), args.open_layers, args.keep_e5)
    texts = {cid: chunks[cid].indexed for cid in {i for _, ids in groups for i in ids} | {
        i for _, ids, _, _ in held + dev for i in ids}}  # fmt: skip
    scorer.cache(list(texts.values()), "passage: ", PASSAGE_TOKENS)
    scorer.cache([q for q, _ in groups] + [q for q, *_ in held + dev], "query: ", QUERY_TOKENS)
    record: dict[str, Any] = {
        "settings": vars(args) | {"questions": str(args.questions)},
        "groups": len(groups),
    }
    record["held_out_untrained"] = evaluate(scorer, held, texts)
    print(json.dumps({"untrained": record["held_out_untrained"]}), flush=True)
    optimizer = torch.optim.AdamW(
        [
            {"params": scorer.parameters(), "lr": args.lr},
            {"params": [scorer.log_scale, scorer.weight], "lr": 1e-2},
        ],
        weight_decay=0.01,
    )
    steps = args.epochs * (len(groups) // args.batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / (0.1 * steps)) * max(0.0, (steps - i) / steps)
    )
    shuffle = random.Random(args.seed)
    for epoch in range(args.epochs):
        shuffle.shuffle(groups)
        for at in range(0, len(groups) - args.batch + 1, args.batch):
            loss = torch.zeros(())
            for question, ids in groups[at : at + args.batch]:
                logits = scorer.scores(question, [texts[i] for i in ids]) * scorer.log_scale.exp()
                loss = loss + torch.nn.functional.cross_entropy(
                    logits[None], torch.zeros(1, dtype=torch.long)
                )
            (loss / args.batch).backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        record[f"held_out_epoch_{epoch + 1}"] = evaluate(scorer, held, texts)
        print(json.dumps({f"epoch {epoch + 1}": record[f"held_out_epoch_{epoch + 1}"]}), flush=True)
    record["dev"] = evaluate(scorer, dev, texts)
    record["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps({k: record[k] for k in ("settings", "groups", "dev", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
