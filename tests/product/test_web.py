"""The web page in headless Chromium (selenium + the system chromedriver): upload a file, see the
transcript and the word table appear. Skipped only when Chromium or selenium is absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs chromium and chromedriver: apt-get install chromium "
                              "chromium-driver"),
]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1100,900", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_transcript_and_word_timings(server, browser, digit_corpus, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    row = json.loads(digit_corpus["train"].read_text().splitlines()[0])
    wav = digit_corpus["train"].parent / row["audio_filepath"]
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "Limits" in d.find_element(By.ID, "model-info").text)  # /healthz read
    send = browser.find_element(By.ID, "send")
    assert not send.is_enabled()
    browser.find_element(By.ID, "file").send_keys(str(wav))
    wait.until(EC.element_to_be_clickable((By.ID, "send"))).click()
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith(
        f"{row['duration']:.2f} s of audio") or d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    transcript = browser.find_element(By.ID, "transcript").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#words tbody tr")
    expected = _post_directly(server, wav)
    assert transcript == expected["text"] and transcript, "the page shows the server's transcript"
    assert len(rows) == len(expected["words"])
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert first[0].text == expected["words"][0]["word"]
    assert float(first[1].text) == pytest.approx(expected["words"][0]["start"], abs=0.006)
    shot = tmp_path / "web_page.png"  # kept under pytest's basetemp for a look
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_non_audio_upload_shows_the_error(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.txt"
    bad.write_text("not audio at all\n" * 20)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("415: not a supported audio file")
    assert browser.find_element(By.ID, "transcript").text == ""


def _post_directly(server, wav: Path) -> dict:
    import httpx

    with open(wav, "rb") as f:
        return httpx.post(server.url + "/v1/transcribe", files={"file": (wav.name, f)},
                          timeout=60).json()
