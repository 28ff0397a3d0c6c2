"""The Streamlit app through `AppTest`: the tiny test notes, the hash embedder and a scripted model."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from assistant.retrieval import Searcher
from assistant.settings import from_env
from tests.conftest import REPO, HashEmbedder, cli
from tests.test_answer import ScriptedModel
from ui import chat, history, markup, render, resources, serve

APP = str(REPO / "ui" / "app.py")
KV_ANSWER = "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。它用显存换时间。"


@pytest.fixture
def env(notes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's settings point at the test notes and an index under tmp_path; returns the index folder."""
    monkeypatch.setenv("MIANJING_CORPUS", str(notes))
    monkeypatch.setenv("MIANJING_INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("MIANJING_RERANKER", str(tmp_path / "no-reranker"))
    return tmp_path / "index"


@pytest.fixture
def searcher(env: Path, monkeypatch: pytest.MonkeyPatch) -> Searcher:
    found = Searcher(
        from_env(),
        warn=lambda _: None,
        embedder=HashEmbedder(),
    )
    monkeypatch.setattr(resources, "open_searcher", lambda settings: found)
    return found


def app_with(model: ScriptedModel | None, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    reply = (model, "") if model else (None, "test: no model")
    monkeypatch.setattr(resources, "load_model", lambda settings: reply)
    return AppTest.from_file(APP, default_timeout=60).run()


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    assert not app.exception, app.exception
    return app


def texts(elements: object) -> list[str]:
    return [e.value for e in elements]  # type: ignore[attr-defined]


def view(app: AppTest, name: str) -> AppTest:
    """Switch the app to the view whose label contains `name` (Chat, Notes, Explorer, Practice)."""
    choice = next(v for v in app.radio(key="view").options if name in v)
    app.radio(key="view").set_value(choice).run()
    assert not app.exception, app.exception
    return app


def test_answer_has_linked_citations_and_highlighted_sources(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = ask(app_with(ScriptedModel(KV_ANSWER), monkeypatch), "KV Cache 是什么？")
    answer = next(m for m in texts(app.markdown) if "推理时缓存" in m)
    assert "[\\[1\\]](#src-1-1)" in answer  # [1] links to its source
    assert any('id="src-1-1"' in m for m in texts(app.markdown))
    source = app.expander[0]
    assert source.label.startswith("**[1]** 注意力机制 › ") and "KV Cache" in source.label  # the note's title
    assert not source.proto.expanded  # collapsed until clicked
    assert "推理时缓存历史 token 的 K 和 V" in source.success[0].value  # the cited span, highlighted
    assert any("为什么要除以根号" in c for c in texts(source.caption))  # context before it in the note
    assert any("`heading.md` characters" in c for c in texts(source.caption))  # the file name kept
    assert app.code[0].value == next(t.answer.text for t in app.session_state["history"])  # copyable
    assert any(c.startswith("answered in ") for c in texts(app.caption))
    assert len(app.feedback) == 1 and not app.warning


def test_refusal_is_shown_as_such_with_the_closest_passages(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = ScriptedModel()  # the notes never mention DoRA or GPTQ: refused before generating
    app = ask(app_with(silent, monkeypatch), "DoRA 和 GPTQ 有什么关系？")
    assert len(app.warning) == 1
    assert "笔记中没有相关内容" in app.warning[0].value and "DoRA" in app.warning[0].value
    assert "Closest passages in your notes:" in texts(app.caption)
    assert 1 <= len(app.main.expander) <= 3 and not app.success  # pointers, not cited sources


def test_follow_up_shows_the_rewritten_question(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel(KV_ANSWER, "KV Cache 用什么换时间？", "用显存换时间 [1]。")
    app = ask(ask(app_with(model, monkeypatch), "KV Cache 是什么？"), "它用什么换时间？")
    assert "↳ searched as: KV Cache 用什么换时间？" in texts(app.caption)
    assert len(app.chat_message) == 4 and len(app.feedback) == 2
    app.button(key="clear").click().run()
    assert not app.chat_message


def test_feedback_is_appended_as_jsonl(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = ask(app_with(ScriptedModel(KV_ANSWER), monkeypatch), "KV Cache 是什么？")
    app.feedback[0].set_value(1).run()
    app.feedback[0].set_value(0).run()
    lines = [json.loads(line) for line in (env / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["vote"] for line in lines] == ["up", "down"]
    assert lines[0]["question"] == lines[0]["standalone_question"] == "KV Cache 是什么？"
    shown = "推理时缓存历史 token 的 K 和 V，避免重复计算 [1]。它用显存换时间 [1]。"  # every sentence marked
    assert lines[0]["answer"] == shown and lines[0]["cited_ids"][0].startswith("heading.md#")
    assert set(lines[0]) >= {"time", "refused", "llm", "corpus"}


def test_retrieval_explorer_shows_every_stage(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    app = view(app_with(None, monkeypatch), "Explorer")
    app.text_input(key="explore").input("ZeRO-3 和 ZeRO-2 的区别").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert {"bm25", "bm25 #", "dense", "dense #", "fused", "fused #"} <= set(table.columns)
    assert "rerank" not in table.columns  # hybrid mode runs no reranker: no column of None
    assert "ZeRO-3" in table["heading"][0] and table["fused #"].notna().all()
    scores = table[["score", "bm25", "dense", "fused"]].stack().dropna()  # NaN: not in that list
    assert ((scores * 1000).round(6) % 1 == 0).all(), scores  # 3 decimals at most
    legend = next(c for c in texts(app.caption) if "reciprocal rank fusion" in c)
    assert "**bm25**" in legend and "**dense**" in legend and "× 0.5" in legend
    assert any(":orange-background[ZeRO]" in m for m in texts(app.expander[0].markdown))  # query terms
    app.selectbox(key="mode").select("rerank").run()
    assert "Reranker off" in app.info[0].value and "no-reranker" in app.info[0].value
    assert "rerank" not in app.dataframe[0].value.columns  # the fused order, said plainly
    app.selectbox(key="mode").select("bm25").run()
    assert {"dense", "fused"}.isdisjoint(app.dataframe[0].value.columns)
    assert not app.dataframe[0].value.isna().all().any()  # no column the mode does not compute


class BrokenModel(ScriptedModel):
    def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
        yield "推理时"
        raise RuntimeError("qwen failed: ValueError: Requested tokens exceed context window")


def test_a_model_failure_is_a_message(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    app = ask(app_with(BrokenModel(), monkeypatch), "KV Cache 是什么？")
    assert "Could not answer" in app.error[0].value and "context window" in app.error[0].value
    assert not app.feedback


def test_without_a_model_the_chat_is_retrieval_only(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIANJING_LLM", str(env.parent / "missing.gguf"))
    monkeypatch.setattr(resources, "open_searcher", lambda s: Searcher(s, embedder=HashEmbedder()))  # type: ignore
    app = AppTest.from_file(APP, default_timeout=60).run()  # the real load_model, on a missing file
    assert "Retrieval-only mode" in app.warning[0].value and "does not exist" in app.warning[0].value
    assert app.button(key="retry")
    ask(app, "RAG有什么缺点？")
    assert "Retrieval only" in app.info[0].value
    assert "RAG" in app.expander[0].label and not app.feedback


def test_a_missing_notes_folder_is_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIANJING_CORPUS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MIANJING_INDEX", str(tmp_path / "index"))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception and "notes folder not found" in app.error[0].value
    assert "--corpus" in app.error[0].value


def test_reindex_picks_up_a_new_note(
    searcher: Searcher, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_with(None, monkeypatch)
    before = len(searcher.index.chunks)
    (notes / "new.md").write_text(
        "# 新笔记\n\n## LoRA 是什么？\n\n低秩矩阵分解微调。\n\n## QLoRA？\n\n量化后再 LoRA。\n"
    )
    app.button(key="reindex").click().run()
    assert not app.exception
    assert "+1 new, 0 changed, -0 deleted" in app.sidebar.success[0].value
    assert len(searcher.index.chunks) == before + 2


def test_span_keeps_whole_lines_of_context_around_the_cited_part(searcher: Searcher, notes: Path) -> None:
    chunk = next(c for c in searcher.index.chunks if "RMSNorm" in c.heading[-1])
    note = (notes / chunk.source).read_text(encoding="utf-8")
    part = render.span(note, chunk, "RMSNorm 去掉了均值中心化，计算量更小。", around=40)
    assert part.cited == "RMSNorm 去掉了均值中心化，计算量更小。"
    assert part.before == "$$\n\n" and part.after.startswith("LLaMA 使用")
    whole = render.span(None, chunk, "not in the chunk")  # no note: the chunk alone, all of it cited
    assert (whole.before, whole.cited, whole.after) == ("", chunk.text, "")


def test_citation_links_only_for_passages_that_exist() -> None:
    assert render.link_citations("A [1,2]. B [7].", 3, {1, 2}) == (
        "A [\\[1\\]](#src-3-1)[\\[2\\]](#src-3-2). B [7]."
    )


def test_serve_binds_localhost_headless_without_usage_stats(notes: Path) -> None:
    line = serve.command(8765)
    assert "--server.address=127.0.0.1" in line and "--server.headless=true" in line
    assert "--browser.gatherUsageStats=false" in line and "--server.port=8765" in line
    env = serve.environment(from_env(corpus=notes, k=4))
    assert env["MIANJING_CORPUS"] == str(notes) and env["MIANJING_K"] == "4"


def test_ui_command_says_in_one_line_when_it_cannot_start(notes: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = cli("ui", "--port", port, "--corpus", str(notes), env={})
    assert taken.returncode == 2 and "choose another --port" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
    missing = cli("ui", "--corpus", str(tmp_path / "nowhere"), env={})
    assert missing.returncode == 2 and "notes folder not found" in missing.stderr


def test_practice_tab_grades_an_answer_and_saves_the_chosen_rating(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(searcher, "settings", replace(searcher.settings, answered_above=0.0))
    app = view(app_with(None, monkeypatch), "Practice")  # no language model: the lexical + embedding grade
    assert not app.exception, app.exception
    question = next(m for m in texts(app.markdown) if m.startswith("#### 问："))
    assert [m.label for m in app.metric][:2] == ["Due today", "New"]
    app.text_area(key="practice_answer_text").set_value("我不知道")
    app.button[0].click().run()  # the form's Grade button
    assert not app.exception, app.exception
    assert any("Again" in e.value for e in app.error)  # "I don't know" is Again, without a model
    assert app.radio(key="practice_rating").value == "again"
    app.radio(key="practice_rating").set_value("hard")
    app.button(key="practice_save").click().run()
    assert not app.exception, app.exception
    state = json.loads((env / "practice.json").read_text(encoding="utf-8"))
    assert [log["rating"] for log in state["logs"]] == [2]  # Hard, the override, was saved
    assert next(m for m in texts(app.markdown) if m.startswith("#### 问：")) != question  # the next card


def test_a_sentence_no_evidence_restates_is_grey_and_unmarked(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    invented = "量子计算机可以让注意力机制快一万倍 [1]。"
    app = ask(app_with(ScriptedModel(KV_ANSWER + invented), monkeypatch), "KV Cache 是什么？")
    answer = next(m for m in texts(app.markdown) if "推理时缓存" in m)
    assert ":gray[量子计算机可以让注意力机制快一万倍。]" in answer  # its [1] removed: nothing supports it
    assert any("restate none of your notes" in c for c in texts(app.caption))


def test_first_screen_lists_titles_and_asks_a_clicked_example(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_with(ScriptedModel(KV_ANSWER), monkeypatch)
    assert not app.exception and not app.chat_message
    shown = "\n".join(texts(app.main.markdown))
    assert "**注意力机制** · 4 passages" in shown and "**RAG** · 2 passages" in shown  # titles, not names
    assert "heading.md" not in shown and "ask" in shown.lower() and "browse" in shown
    examples = [b.label for b in app.button if b.key and b.key.startswith("example-")]
    assert 4 <= len(examples) <= 6 and "为什么要除以根号 d_k？" in examples  # the notes' own questions
    question = app.button(key="example-1").label
    app.button(key="example-1").click().run()
    assert not app.exception, app.exception
    assert app.chat_message[0].markdown[0].value == question  # asked exactly as if typed
    assert any("推理时缓存" in m for m in texts(app.markdown)) and len(app.feedback) == 1
    assert not any(b.key and b.key.startswith("example-") for b in app.button)  # the chat took its place


def test_chat_is_kept_across_a_reload_and_listed_among_past_chats(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel(KV_ANSWER, "KV Cache 用什么换时间？", "用显存换时间 [1]。")
    first = ask(app_with(model, monkeypatch), "KV Cache 是什么？")
    chat_id = first.query_params["chat"]
    chat_id = chat_id if isinstance(chat_id, str) else chat_id[0]
    assert (env / "chats" / f"{chat_id}.json").is_file()
    reloaded = AppTest.from_file(APP, default_timeout=60)
    reloaded.query_params["chat"] = chat_id
    reloaded.run()  # a reload: a new session with the same URL
    assert not reloaded.exception, reloaded.exception
    assert reloaded.chat_message[0].markdown[0].value == "KV Cache 是什么？"
    assert any("推理时缓存" in m for m in texts(reloaded.markdown))
    ask(reloaded, "它用什么换时间？")  # the conversation continues: the follow-up is rewritten
    assert "↳ searched as: KV Cache 用什么换时间？" in texts(reloaded.caption)
    other = AppTest.from_file(APP, default_timeout=60).run()  # another session: a new chat
    assert not other.chat_message
    other.button(key=f"chat-{chat_id}").click().run()
    assert not other.exception and len(other.chat_message) == 4  # reopened, both questions


def test_a_corrupted_chat_file_is_kept_aside_with_a_warning(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = env / "chats" / "20261203-120000-abcd.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"format": 1, "turns": [{"id": 1, "quest', encoding="utf-8")
    monkeypatch.setattr(resources, "load_model", lambda settings: (None, "test"))
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["chat"] = broken.stem
    app.run()
    assert not app.exception
    said = next(w.value for w in app.warning if "could not be read" in w.value)
    assert len(said.splitlines()) == 1 and "20261203-120000-abcd.json.bad" in said
    assert not broken.exists() and broken.with_name(broken.name + ".bad").read_text().startswith('{"format"')


def test_export_has_each_answer_with_its_sources(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    app = ask(app_with(ScriptedModel(KV_ANSWER), monkeypatch), "KV Cache 是什么？")
    assert not app.download_button(key="export").proto.disabled
    turns = app.session_state["history"]
    exported = history.markdown(turns, {"heading.md": "注意力机制"})
    chunk = turns[0].answer.passages[0].chunk
    assert exported.startswith("# mianjing chat\n\n## KV Cache 是什么？\n\n推理时缓存历史 token")
    span = f"characters {chunk.start}–{chunk.end}"
    where = f"[1] 注意力机制 — `heading.md` › 注意力机制 > 4. KV Cache 是什么？, {span}"
    assert where in exported and "   > ## 4. KV Cache 是什么？ 推理时缓存历史 token 的 K 和 V" in exported


def test_stop_keeps_what_was_written_marked_stopped(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    class Interrupted(ScriptedModel):  # what a click on Stop does: the script ends inside the stream
        def stream(self, messages: list[tuple[str, str]]) -> Iterator[str]:
            yield "推理时缓存历史"
            raise StopException()

    app = app_with(Interrupted(), monkeypatch)
    app.chat_input[0].set_value("KV Cache 是什么？").run()
    assert not chat.GENERATING.locked()  # the model is free for the next answer
    app.run()  # the rerun the click asked for
    assert not app.exception, app.exception
    assert any(m == "推理时缓存历史" for m in texts(app.markdown))
    assert any(c.startswith("⏹ Stopped") for c in texts(app.caption))
    saved = json.loads(next((env / "chats").glob("*.json")).read_text(encoding="utf-8"))
    assert saved["turns"][0]["stopped"] == "推理时缓存历史"


def test_comment_is_saved_with_the_vote(
    searcher: Searcher, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = ask(app_with(ScriptedModel(KV_ANSWER), monkeypatch), "KV Cache 是什么？")
    app.text_input(key="comment-1").input("少了显存占用的估算").run()
    app.feedback[0].set_value(0).run()
    lines = [json.loads(line) for line in (env / "feedback.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines[-1]["vote"] == "down" and lines[-1]["comment"] == "少了显存占用的估算"


def test_html_in_notes_is_inert_text_and_missing_images_their_alt(
    env: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (notes / "unsafe.md").write_text(
        "# 危险笔记\n\n## <u>什么是 XSS？</u>\n\n<script>alert(1)</script> 和 <img src=x onerror=alert(2)> "
        "都不能执行。\n\n![结构图](assets/missing.png)\n",
        encoding="utf-8",
    )
    found = Searcher(from_env(), warn=lambda _: None, embedder=HashEmbedder())
    monkeypatch.setattr(resources, "open_searcher", lambda settings: found)
    app = view(app_with(None, monkeypatch), "Notes")
    app.selectbox(key="browse_file").set_value("unsafe.md").run()
    assert not app.exception, app.exception
    shown = [m for m in app.main.markdown if "alert" in m.value]
    assert shown and not any(m.proto.allow_html for m in shown)  # HTML never enabled
    body = shown[0].value
    assert "`<script>`alert(1)`</script>`" in body and "`<img src=x onerror=alert(2)>`" in body  # code
    assert "🖼 *结构图*" in body and "missing.png" not in body
    assert "<u>" not in " ".join(e.label for e in app.main.expander)  # <u> dropped, its text kept
    assert markup.clean("<u>缺点</u>`<u>`") == "缺点`<u>`"  # inline code stays as written


def test_a_cited_table_row_shows_the_whole_table(searcher: Searcher, notes: Path) -> None:
    chunk = next(c for c in searcher.index.chunks if c.source == "table_formula.md")
    note = (notes / chunk.source).read_text(encoding="utf-8")
    part = render.span(note, chunk, "| RMSNorm | 只除均方根 | 更快 |")
    assert part.cited.startswith("| 方法 | 公式 | 特点 |") and part.cited.endswith(
        "| RMSNorm | 只除均方根 | 更快 |"
    )
    after = render.span(note, chunk, "RMSNorm 的公式如下。", around=30)  # the context cuts into the table
    assert after.before.startswith("| 方法") and after.before.count("\n|") == 3  # all four rows


def test_open_in_the_note_then_ask_about_this(searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel(KV_ANSWER, "KV Cache 是什么？", KV_ANSWER)  # answer, rewrite, answer
    app = ask(app_with(model, monkeypatch), "KV Cache 是什么？")
    app.button(key="open-1-1").click().run()  # from the cited source
    assert not app.exception, app.exception
    assert (
        app.radio(key="view").value.endswith("Notes")
        and app.selectbox(key="browse_file").value == "heading.md"
    )
    opened = next(e for e in app.main.expander if e.proto.expanded)
    assert "KV Cache" in opened.label and "📌 the passage you opened from a source" in texts(opened.caption)
    question = next(b for b in opened.button if b.key.startswith("ask-"))
    question.click().run()
    assert not app.exception, app.exception
    assert app.radio(key="view").value.endswith("Chat")
    assert app.chat_message[2].markdown[0].value == "KV Cache 是什么？"  # the passage's own question


def test_rerank_is_marked_unavailable_with_how_to_enable_it(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_with(None, monkeypatch)
    assert app.selectbox(key="mode").options[-1] == "rerank (unavailable)"
    said = next(c for c in texts(app.sidebar.caption) if "Rerank unavailable" in c)
    assert "mianjing tune" in said and "MIANJING_RERANKER" in said and "no-reranker" in said


def test_a_follow_ups_timing_includes_its_rewrite(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel(KV_ANSWER, "KV Cache 用什么换时间？", "用显存换时间 [1]。")
    app = ask(ask(app_with(model, monkeypatch), "KV Cache 是什么？"), "它用什么换时间？")
    took = [c for c in texts(app.caption) if c.startswith("answered in ")]
    assert "rewriting the follow-up" not in took[0] and "rewriting the follow-up" in took[1]
    follow_up = app.session_state["history"][1]
    assert follow_up.waited_s * 1000 >= follow_up.answer.diagnostics.timings_ms["total"] - 1
