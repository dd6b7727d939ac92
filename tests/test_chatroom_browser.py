"""Two people in real headless Chromium windows use the chatroom: each sees the other online and the other's messages.

Debian's chromium and chromedriver only (no browser download); the screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from chatroom.app import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT
from chatroom.connect_per_request import MESSAGES_KEY, ONLINE_KEY, ONLINE_VERSION_KEY
from chatroom.validation import MAX_MESSAGE_LENGTH
from chatroom.process import ChatroomProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_SECONDS = 10
# Headless, and nothing that would try to reach the network on its own.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)
XSS_NAME = "<img src=x onerror=alert(1)>"
# A page notices a silent server after the heartbeat's interval and timeout; and comes back within Socket.IO's
# longest reconnection delay (5 s, plus its jitter) once the server answers again.
SILENCE_NOTICED_SECONDS = HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + 4
RECONNECT_SECONDS = 15
# Whether the end of the newest message is inside the visible part of the message list (a long message may be
# taller than the list on a phone).
NEWEST_IN_VIEW = """
const list = document.getElementById("messages");
const items = list.querySelectorAll(".message");
if (!items.length) return false;
const box = list.getBoundingClientRect(), last = items[items.length - 1].getBoundingClientRect();
return last.bottom > box.top && last.bottom <= box.bottom + 1;
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="Debian's chromium and chromium-driver are not installed (./dev setup installs them)",
    ),
]


class Person:
    """One person at one browser window, doing what they would do with the mouse and keyboard."""

    def __init__(self, profile: Path, width: int, height: int) -> None:
        options = Options()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.closed = False
        # Headless windows cannot be narrower than 500 pixels; emulate the phone's viewport instead.
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def texts(self, css: str) -> list[str]:
        return [node.get_attribute("textContent") for node in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def wait_until(self, what: str, condition: Callable[[], object], timeout: float = WAIT_SECONDS) -> None:
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"the page never showed {what}") from None

    def open(self, url: str) -> None:
        self.driver.get(url)
        self.wait_until("that it is connected", lambda: self.find("#status").text == "Connected")

    def type_into(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def join(self, name: str) -> None:
        self.type_into("#name", name)
        self.find("#join").click()
        self.wait_until(f"the chat after joining as {name}", lambda: self.find("#message").is_displayed())

    def say(self, text: str) -> None:
        self.type_into("#message", text)
        self.find("#send").click()
        self.wait_until("the message box emptied after sending", lambda: self.find("#message").get_attribute("value") == "")

    def status(self) -> str:
        return self.find("#status").text

    def shown(self, css: str) -> bool:
        return self.find(css).is_displayed()

    def newest_in_view(self) -> bool:
        return self.driver.execute_script(NEWEST_IN_VIEW)

    def online(self) -> list[str]:
        return self.texts("#online .person-name")

    def messages(self) -> list[tuple[str, str]]:
        return list(zip(self.texts("#messages .message .who"), self.texts("#messages .message .text")))

    def alert_shown(self) -> bool:
        try:
            self.driver.switch_to.alert
        except NoAlertPresentException:
            return False
        return True

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        assert self.driver.save_screenshot(str(path)), f"could not save {path}"
        return path

    def quit(self) -> None:
        if not self.closed:
            self.closed = True
            self.driver.quit()


@pytest.fixture
def chatroom(upstream):
    upstream.client().delete(ONLINE_KEY, ONLINE_VERSION_KEY, MESSAGES_KEY)
    with ChatroomProcess(upstream.url()) as proc:
        yield proc


@pytest.fixture
def people(tmp_path):
    """A wide desktop window and a narrow phone-sized one, each with a fresh profile."""
    opened = []

    def open_window(width: int, height: int) -> Person:
        person = Person(tmp_path / f"profile-{len(opened)}", width, height)
        opened.append(person)
        return person

    yield open_window
    for person in opened:
        person.quit()


def test_two_people_chat_in_real_browsers(chatroom, people):
    mallory, bob = people(1200, 760), people(390, 760)
    for person in (mallory, bob):
        person.open(chatroom.url + "/")

    mallory.find("#join").click()  # an empty name gets a visible reason, not a dead button
    mallory.wait_until("an error for the empty name", lambda: mallory.find("#join-error").is_displayed())
    assert "name" in mallory.find("#join-error").text
    mallory.screenshot("chatroom-join-error.png")

    mallory.join(XSS_NAME)
    bob.join("Bob")
    for person in (mallory, bob):
        person.wait_until("both people online", lambda p=person: sorted(p.online()) == sorted([XSS_NAME, "Bob"]))

    mallory.say("<b>Hi Bob</b>, welcome!")
    bob.say("Hello! Nice to see you here.")
    mallory.say("Let's try the sidecar next.")
    expected = [
        (XSS_NAME, "<b>Hi Bob</b>, welcome!"),
        ("Bob", "Hello! Nice to see you here."),
        (XSS_NAME, "Let's try the sidecar next."),
    ]
    for person in (mallory, bob):
        person.wait_until("all three messages", lambda p=person: p.messages() == expected)

    # Markup typed by people is shown as the characters they typed, and never runs.
    assert mallory.find("#greeting").text == f"Hi, {XSS_NAME}!"
    for person in (mallory, bob):
        assert person.driver.find_elements(By.CSS_SELECTOR, "img, b, #messages script") == []
        assert not person.alert_shown()

    mallory.screenshot("chatroom-wide.png")
    bob.screenshot("chatroom-narrow.png")
    for person in (mallory, bob):
        assert person.console_errors() == [], "the page must load everything from the app, without errors"

    bob.quit()  # closing the window takes Bob off everyone's list
    mallory.wait_until("Bob leave", lambda: mallory.online() == [XSS_NAME])

    chatroom.stop()  # and a page that lost its server says so
    mallory.wait_until("that it lost the connection", lambda: mallory.find("#status").text != "Connected")
    assert mallory.find("#status").get_attribute("data-state") in {"offline", "connecting"}


def test_the_status_stops_saying_connected_while_the_server_is_silent(chatroom, people):
    """A server frozen (or a host gone) closes nothing: the heartbeat is what tells the page, within seconds."""
    ann = people(1200, 760)
    ann.open(chatroom.url + "/")
    chatroom.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        ann.wait_until("that the server went silent", lambda: ann.status() != "Connected", SILENCE_NOTICED_SECONDS)
        noticed = time.monotonic() - frozen
    finally:
        chatroom.proc.send_signal(signal.SIGCONT)
    assert ann.find("#status").get_attribute("data-state") in {"offline", "connecting"}, ann.status()
    assert noticed < SILENCE_NOTICED_SECONDS
    ann.wait_until("that it is connected again", lambda: ann.status() == "Connected", RECONNECT_SECONDS)


def test_connection_notices_go_once_the_page_is_back(chatroom, people):
    ann = people(1200, 760)
    ann.open(chatroom.url + "/")
    ann.join("Ann")
    chatroom.stop()
    ann.wait_until("that it lost the server", lambda: ann.status() != "Connected")
    ann.type_into("#message", "anyone there?")
    ann.find("#send").click()
    ann.wait_until("a notice that it is not connected", lambda: ann.shown("#message-error"))
    assert "Not connected" in ann.find("#message-error").text

    chatroom.start()  # the same address: the page reconnects, joins again under its name, and the notice is gone
    ann.wait_until("that it is connected again", lambda: ann.status() == "Connected", RECONNECT_SECONDS)
    ann.wait_until("the notice gone after reconnecting", lambda: not ann.shown("#message-error"))
    ann.wait_until("the chat again after re-joining", lambda: ann.shown("#message"))
    ann.say("back again")
    ann.wait_until("the message sent after the reconnect", lambda: ann.messages() == [("Ann", "back again")])
    ann.screenshot("chatroom-reconnected.png")


def test_refusals_go_once_fixed_and_the_newest_message_stays_in_view(chatroom, people, upstream):
    history = [json.dumps({"id": f"seed-{i}", "name": "Bob", "text": f"message {i}", "ts": 1_700_000_000_000 + i})
               for i in range(30)]
    upstream.client().lpush(MESSAGES_KEY, *history)  # newest first, as the chatroom keeps them
    ann = people(390, 700)
    ann.open(chatroom.url + "/")

    ann.find("#join").click()  # an empty name is refused; typing one takes the refusal away
    ann.wait_until("a refusal of the empty name", lambda: ann.shown("#join-error"))
    ann.type_into("#name", "Ann")
    ann.wait_until("the name refusal gone once a name is typed", lambda: not ann.shown("#join-error"))
    ann.find("#join").click()
    ann.wait_until("the chat after joining", lambda: ann.shown("#message"))
    ann.wait_until("the newest message in view after joining", ann.newest_in_view)
    assert ann.driver.execute_script("const l = document.getElementById('messages'); "
                                     "return l.scrollHeight > l.clientHeight;"), "the list must overflow to test this"

    ann.type_into("#message", "x" * (MAX_MESSAGE_LENGTH + 100))
    ann.find("#send").click()
    ann.wait_until("the notice that the message is too long", lambda: ann.shown("#message-error"))
    assert f"limit is {MAX_MESSAGE_LENGTH}" in ann.find("#message-error").text
    ann.wait_until("the newest message still in view under the notice", ann.newest_in_view)
    ann.screenshot("chatroom-notice.png")

    ann.find("#message").send_keys(Keys.BACKSPACE * 50)  # still too long: the notice is still true
    assert ann.shown("#message-error")
    ann.find("#message").send_keys(Keys.BACKSPACE * 50)  # exactly at the limit: it is not any more
    ann.wait_until("the notice gone once the message fits", lambda: not ann.shown("#message-error"))
    ann.find("#send").click()
    ann.wait_until("the fixed message sent and in view",
                   lambda: ann.messages()[-1] == ("Ann", "x" * MAX_MESSAGE_LENGTH) and ann.newest_in_view())
