"""Draw the screenshots of `mnist serve` in docs/: the page on a Keras-recipe run and on a
softmax regression, and a training started from the page, in headless Chromium, as a user
sees them.

Without runs given, it trains both first (`configs/keras-784-500-10.yaml` for 5 epochs with
train.snapshots, and `configs/softmax-784-10.yaml`) into a temporary output root, then
starts `mnist serve` on them, draws a 3 on the canvas, clicks the confusion matrix's largest
error cell, and writes `docs/serve-keras.png` and `docs/serve-softmax.png`; then starts a
training from the page's form (784-100-10, augmentation on, 30 epochs), draws the 3 again
and writes `docs/serve-training.png` once three epochs are done (all reduced to a palette: small
files).
Needs the serve and dev extras and Debian's `chromium` and `chromium-driver`.

Example:
    MNIST_DATA=../shared/data/mnist.npz python docs/make_screenshots.py
    python docs/make_screenshots.py --keras outputs/keras-784-500-10-20250101-120000 \
        --softmax outputs/softmax-784-10-20250101-130000
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

DOCS = Path(__file__).parent
BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1400,1250", "--hide-scrollbars",
)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", type=Path, help="a run of the Keras recipe (else trained)")
    parser.add_argument("--softmax", type=Path, help="a softmax-regression run (else trained)")
    return parser.parse_args()


def mnist(*arguments: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_cli", *arguments], check=True,
                          text=True, **options)


def train(config: str, output_root: Path, *extra: str) -> Path:
    before = set(output_root.iterdir()) if output_root.exists() else set()
    mnist("train", "--config", config, "--out", str(output_root), *extra,
          stdout=subprocess.DEVNULL)
    (run,) = set(output_root.iterdir()) - before
    return run


def three() -> list[list[tuple[float, float]]]:
    """A handwritten-looking 3 as two strokes, offsets in canvas pixels from its centre."""
    def arc(centre_y: float, radius: float, start: float, end: float):
        steps = 14
        return [(radius * 1.1 * math.cos(math.radians(start + (end - start) * step / steps)),
                 centre_y + radius * math.sin(math.radians(start + (end - start) * step / steps)))
                for step in range(steps + 1)]
    return [arc(-48, 42, -160, 95), arc(40, 52, -95, 150)]


def draw(driver, canvas, strokes) -> None:
    for points in strokes:
        pointer = PointerInput(interaction.POINTER_PEN, "pen")
        actions = ActionBuilder(driver, mouse=pointer)
        actions.pointer_action.move_to(canvas, int(points[0][0]), int(points[0][1]))
        actions.pointer_action.pointer_down()
        for x, y in points[1:]:
            actions.pointer_action.move_to(canvas, int(x), int(y))
        actions.pointer_action.pointer_up()
        actions.perform()


def save(driver, path: Path) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(900, height + 120), 2400))
    time.sleep(0.5)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "page.png"
        driver.save_screenshot(str(raw))
        with Image.open(raw) as image:
            image.convert("RGB").quantize(colors=128).save(path, optimize=True)
    print(f"Wrote {path} ({path.stat().st_size // 1024} KiB)")


def by_testid(driver, testid: str):
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def training_screenshot(driver, address: str, path: Path) -> None:
    """A training started from the form, shown live once three epochs are done, then
    stopped."""
    driver.set_window_size(1400, 1250)
    driver.get(address)
    wait = WebDriverWait(driver, 300)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="confusion-cell"]'))
    Select(by_testid(driver, "train-layers")).select_by_value("784-100-10")
    by_testid(driver, "train-augment").click()
    epochs = by_testid(driver, "train-epochs")
    epochs.clear()
    epochs.send_keys("30")
    by_testid(driver, "train-start").click()
    wait.until(lambda d: "Training" in by_testid(d, "train-status").text)
    draw(driver, by_testid(driver, "canvas"), three())
    wait.until(lambda d: re.search(r" ([3-9]|\d\d) of 30 epochs", by_testid(d, "live").text))
    time.sleep(1.5)
    save(driver, path)
    by_testid(driver, "train-stop").click()
    wait.until(lambda d: "Stopped" in by_testid(d, "train-status").text)


def screenshot(driver, address: str, run: str, path: Path) -> None:
    driver.get(f"{address}?run={run}")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="confusion-cell"]'))
    Select(driver.find_element(By.CSS_SELECTOR, '[data-testid="run"]')).select_by_value(run)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="confusion-cell"]'))
    canvas = driver.find_element(By.CSS_SELECTOR, '[data-testid="canvas"]')
    draw(driver, canvas, three())
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="prediction"]')
               .text.strip().isdigit())
    time.sleep(1.0)
    cells = driver.find_elements(By.CSS_SELECTOR, '[data-testid="confusion-cell"]')
    cell = max(cells, key=lambda each: int(each.text))
    ActionChains(driver).click(cell).perform()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="error-digit"]'))
    time.sleep(0.5)
    save(driver, path)


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory() as folder:
        output_root = Path(folder) / "outputs"
        keras_run = arguments.keras or train("configs/keras-784-500-10.yaml", output_root,
                                             "--epochs", "5", "--set", "train.snapshots=true")
        softmax_run = arguments.softmax or train("configs/softmax-784-10.yaml", output_root)
        server = subprocess.Popen(
            [sys.executable, "-m", "mnist_cli", "serve", str(keras_run), str(softmax_run),
             "--out", str(output_root), "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            address = next(line.split()[1] for line in server.stdout
                           if line.startswith("Open "))
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in BROWSER_FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={Path(folder) / 'profile'}")
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                screenshot(driver, address, keras_run.name, DOCS / "serve-keras.png")
                driver.set_window_size(1400, 1250)
                screenshot(driver, address, softmax_run.name, DOCS / "serve-softmax.png")
                training_screenshot(driver, address, DOCS / "serve-training.png")
            finally:
                driver.quit()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
