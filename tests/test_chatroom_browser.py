"""Two people in real headless Chromium windows use the chatroom: each sees the other online and the other's messages.

Debian's chromium and chromedriver only (no browser download); the screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from chatroom.connect_per_request import MESSAGES_KEY, ONLINE_KEY, ONLINE_VERSION_KEY
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

    def wait_until(self, what: str, condition: Callable[[], object]) -> None:
        try:
            WebDriverWait(self.driver, WAIT_SECONDS, poll_frequency=0.05).until(lambda _: condition())
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
