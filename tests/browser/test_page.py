"""The page, end to end: headless Chromium with a WAV as its microphone, against a real
`agent-run serve agents/orders.yaml --emulate samples/orders.scenario.yaml` (uvicorn, the real SDK
over TLS to the emulator). What a person would see is read from the DOM; that the assistant's audio
reached the speakers is read from the counters the page keeps on `window.agentRun`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from cdp import Browser, Page

ANSWERED = r"/Your order 12345 is \w+/.test(document.getElementById('transcript').innerText)"


def run(body: Callable[[AsyncExitStack], Awaitable[None]], seconds: float = 100) -> None:
    async def main() -> None:
        async with asyncio.timeout(seconds), AsyncExitStack() as stack:
            await body(stack)

    asyncio.run(main())


async def transcript(page: Page) -> str:
    text: str = await page.evaluate("document.getElementById('transcript').innerText")
    return text


async def notice(page: Page, what: str) -> str:
    shown: str = await page.wait_for(
        "(n => !n.hidden && n.textContent)(document.getElementById('notice'))", what)
    return shown


async def say_typed(page: Page, text: str) -> None:
    await page.evaluate(f"""(() => {{
        const box = document.getElementById("text");
        box.value = {json.dumps(text)};
        document.getElementById("text-form").requestSubmit();
    }})()""", user_gesture=True)


def test_the_page_talks_with_the_agent_by_voice_and_by_typing(
        chromium: str, mic_wav: Path, serve: Callable[..., str], tmp_path: Path) -> None:
    url = serve()

    async def body(stack: AsyncExitStack) -> None:
        browser = await stack.enter_async_context(Browser(chromium, tmp_path, fake_audio=mic_wav))
        page = await stack.enter_async_context(browser.page(url))
        assert await page.evaluate("document.getElementById('connection').textContent") == "Not connected"
        await page.wait_for("window.agentRun.agents !== null", "the page to ask for the agents")
        assert await page.evaluate("document.getElementById('agent-choice').hidden")  # only one agent
        await page.click("#start")
        await page.wait_for("window.agentRun.connection === 'connected' && window.agentRun.mic === 'on'",
                            "the page to connect and open the microphone")
        assert await page.evaluate("document.getElementById('agent-name').textContent") == "orders"
        # The WAV asks where order 12345 is: the tool call and the answer show up, and are heard.
        await page.wait_for("document.getElementById('transcript').innerText.includes('trackOrderTool')",
                            "the tool call in the transcript", wait_s=40)
        await page.wait_for(ANSWERED, "the spoken answer's text", wait_s=30)
        shown = await transcript(page)
        assert re.search(r"You\s*Where is my order", shown), shown
        assert '{"orderId":"12345"}' in shown, shown
        assert re.search(r"trackOrderTool: done", shown), shown
        # Several seconds of the answer's audio reached the page and were played through.
        await page.wait_for("window.agentRun.playedSamples > 2 * window.agentRun.ready.output_rate",
                            "two seconds of the assistant's audio to be played", wait_s=30)
        stats = await page.evaluate("window.agentRun")
        assert stats["sentSamples"] > 3 * stats["ready"]["input_rate"], stats
        assert 0 < stats["playedSamples"] <= stats["receivedSamples"], stats
        assert stats["toolCalls"] == [{"name": "trackOrderTool", "input": {"orderId": "12345"}}], stats
        assert stats["toolResults"] == [{"name": "trackOrderTool", "ok": True}], stats
        # A typed line gets its answer (the scenario's next turn: the time, from the other tool).
        await page.wait_for("window.agentRun.state === 'listening'", "the agent to listen again", wait_s=30)
        assert await page.evaluate("!document.getElementById('text-form').hidden")
        await say_typed(page, "What time is it?")
        await page.wait_for("document.getElementById('transcript').innerText.includes('Pacific time')",
                            "the answer to the typed question", wait_s=40)
        shown = await transcript(page)
        assert "What time is it?" in shown and "getDateAndTimeTool" in shown, shown
        # Ending the call is a clean close, not an error.
        await page.click("#stop")
        await page.wait_for("window.agentRun.connection === 'closed'", "the conversation to end")
        assert await page.evaluate("document.getElementById('notice').hidden"), page.log

    run(body)


def test_a_refused_microphone_is_named_and_typing_still_works_and_barges_in(
        chromium: str, serve: Callable[..., str], tmp_path: Path) -> None:
    url = serve()

    async def body(stack: AsyncExitStack) -> None:
        # A (fake) microphone, but no fake UI granting it: the permission below answers "denied".
        browser = await stack.enter_async_context(Browser(chromium, tmp_path,
                                                          args=["--use-fake-device-for-media-stream"]))
        origin = url.rstrip("/")
        await browser.send("Browser.setPermission",
                           {"permission": {"name": "microphone"}, "setting": "denied", "origin": origin})
        page = await stack.enter_async_context(browser.page(url))
        await page.click("#start")
        shown = await notice(page, "the microphone message")
        assert "Microphone access was refused" in shown and "You can still type" in shown, shown
        assert await page.evaluate("window.agentRun.mic") == "refused"
        await say_typed(page, "Where is my order 12345?")
        await page.wait_for(ANSWERED, "the answer to the typed question", wait_s=40)
        assert "trackOrderTool" in await transcript(page)
        # Typing over the answer is a barge-in: the server says `interrupted`, the page drops what
        # it had queued (the worklet test times the cut) and marks the answer as cut short.
        # The answer's text comes as it starts to be spoken: its audio is still arriving.
        heard = await page.evaluate("window.agentRun.receivedSamples")
        await page.wait_for(f"window.agentRun.receivedSamples > {heard} + 4800", "the answer to be playing")
        await say_typed(page, "What time is it?")
        await page.wait_for("window.agentRun.flushes >= 1", "the page to be told to stop playing", wait_s=20)
        assert await page.evaluate("document.querySelectorAll('#transcript li.interrupted').length") == 1
        await page.wait_for("document.getElementById('transcript').innerText.includes('Pacific time')",
                            "the answer to the second typed line", wait_s=40)

    run(body)


def test_a_full_server_and_a_wrong_token_get_clear_messages(
        chromium: str, serve: Callable[..., str], tmp_path: Path) -> None:
    url = serve("--max-conversations", "1", "--token", "s3cret-token")

    async def body(stack: AsyncExitStack) -> None:
        browser = await stack.enter_async_context(Browser(chromium, tmp_path, fake_audio=None,
                                                          args=["--use-fake-ui-for-media-stream",
                                                                "--use-fake-device-for-media-stream"]))
        wrong = await stack.enter_async_context(browser.page(url + "?token=guessed"))
        await wrong.click("#start")
        assert "refused the token" in await notice(wrong, "the wrong token's message")
        missing = await stack.enter_async_context(browser.page(url))
        await missing.click("#start")
        assert "requires a token" in await notice(missing, "the missing token's message")
        first = await stack.enter_async_context(browser.page(url + "?token=s3cret-token"))
        await first.click("#start")
        await first.wait_for("window.agentRun.connection === 'connected'", "the first caller to connect")
        second = await stack.enter_async_context(browser.page(url + "?token=s3cret-token"))
        await second.click("#start")
        shown = await notice(second, "the full server's message")
        assert "The server is full" in shown, shown
        assert await second.evaluate("window.agentRun.closeCode") == 1013
        assert await first.evaluate("window.agentRun.connection") == "connected"

    run(body)


def test_a_server_of_several_agents_offers_a_choice(
        chromium: str, serve: Callable[..., str], tmp_path: Path) -> None:
    url = serve(more_agents=("agents/concierge.yaml",))

    async def body(stack: AsyncExitStack) -> None:
        # No microphone (refused): the fake device's beeps would talk over the greeting awaited below.
        browser = await stack.enter_async_context(Browser(chromium, tmp_path,
                                                          args=["--use-fake-device-for-media-stream"]))
        await browser.send("Browser.setPermission", {"permission": {"name": "microphone"},
                                                     "setting": "denied", "origin": url.rstrip("/")})
        page = await stack.enter_async_context(browser.page(url + "?agent=concierge"))
        await page.wait_for("!document.getElementById('agent-choice').hidden", "the agent selector")
        options = await page.evaluate(
            "[...document.getElementById('agent-select').options].map(o => [o.value, o.selected])")
        assert options == [["orders", False], ["concierge", True]]
        await page.click("#start")
        await page.wait_for("window.agentRun.connection === 'connected'", "the page to connect")
        assert await page.evaluate("document.getElementById('agent-name').textContent") == "concierge"
        assert await page.evaluate("document.getElementById('agent-select').disabled")
        # The concierge speaks first: its greeting is in the transcript.
        await page.wait_for("document.querySelectorAll('#transcript li.assistant').length > 0",
                            "the concierge's greeting", wait_s=30)
        await page.click("#stop")
        await page.wait_for("window.agentRun.connection === 'closed'", "the conversation to end")
        # Picking the other agent makes the next call its.
        await page.evaluate("document.getElementById('agent-select').value = 'orders'")
        await page.click("#start")
        await page.wait_for("window.agentRun.connection === 'connected'", "the page to connect again")
        assert await page.evaluate("document.getElementById('agent-name').textContent") == "orders"

    run(body)
