"""The page of `mnist serve` in a real browser: Debian's headless Chromium driven by Selenium.

`mnist serve` runs as a user starts it (a subprocess on a free port) on two tiny runs trained
here; the test draws a digit on the canvas with pointer events (a pen stroke and a touch
stroke), reads the prediction and the bars from the page and checks them against the server's
own answer for the same pixels, undoes, compares two runs, and clicks a confusion-matrix cell
to see its digits. Then: the epoch slider replays an earlier epoch's answer, the unit images,
saliency and FGSM nudge appear for a drawing, and a 1-epoch training started from the page's
form shows its curve when its epoch lands. Skipped, with the reason, where Chromium, its
driver or Selenium is missing (`.ci/run` installs them where apt can).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from click.testing import CliRunner
from conftest import start_mnist_serve, write_tiny_config

from mnist_cli.cli import cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytest.importorskip("starlette", reason="mnist serve needs the serve extra (starlette)")
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is not installed (the dev extra)")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Chromium and its driver are not installed (apt-get install chromium "
                "chromium-driver): the browser test cannot run", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser and server

BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1400,1400",
)


@pytest.fixture(scope="module")
def server(mnist_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-browser")
    root = folder / "outputs"
    for name, sections in (("hidden", {"train": {"epochs": 3, "snapshots": True}}),
                           ("softmax", {"model": {"layers": [784, 10]},
                                        "train": {"epochs": 1}})):
        config = write_tiny_config(folder / f"{name}.yaml", mnist_path, root, name=name,
                                   **sections)
        result = CliRunner().invoke(cli, ["train", "--config", str(config)])
        assert result.exit_code == 0, result.output
    process, address = start_mnist_serve(root)
    yield address, {path.name.split("-")[0]: path.name for path in root.iterdir()}
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(lambda _driver: condition())


def by_testid(driver, testid: str, many: bool = False):
    selector = f'[data-testid="{testid}"]'
    if many:
        return driver.find_elements(By.CSS_SELECTOR, selector)
    return driver.find_element(By.CSS_SELECTOR, selector)


def stroke(driver, element, points, kind: str) -> None:
    """One stroke through `points` (offsets from the element's centre) with a pointer of
    `kind` (pen or touch): the pointer events a real tablet or phone sends."""
    pointer = PointerInput(kind, kind)
    actions = ActionBuilder(driver, mouse=pointer)
    actions.pointer_action.move_to(element, *points[0]).pointer_down()
    for x, y in points[1:]:
        actions.pointer_action.move_to(element, x, y)
    actions.pointer_action.pointer_up()
    actions.perform()


def page_probabilities(driver, testid: str = "probabilities") -> list[float]:
    items = by_testid(driver, testid).find_elements(By.CSS_SELECTOR, "li")
    return [float(item.get_attribute("data-probability")) for item in items]


def server_answer(address: str, run: str, payload: str) -> dict:
    request = Request(f"{address}api/runs/{run}/predict", data=payload.encode(),
                      headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_draw_a_digit_and_see_the_prediction_then_a_confusion_cell(server, browser):
    address, names = server
    browser.get(address)
    wait_for(browser, lambda: by_testid(browser, "confusion-cell", many=True))
    assert Select(by_testid(browser, "run")).first_selected_option.get_attribute(
        "value") == names["softmax"]  # latest
    assert by_testid(browser, "templates").find_elements(By.CSS_SELECTOR, "canvas")

    # Switch to the net with a hidden layer, and compare it with the softmax regression.
    Select(by_testid(browser, "run")).select_by_value(names["hidden"])
    wait_for(browser, lambda: names["hidden"] in by_testid(browser, "glance").text
             or "784-32-10" in by_testid(browser, "glance").text)
    compare = Select(by_testid(browser, "compare"))
    offered = [option.get_attribute("value") for option in compare.options
               if option.is_enabled()]
    assert names["hidden"] not in offered and names["softmax"] in offered  # never itself
    compare.select_by_value(names["softmax"])
    wait_for(browser, lambda: by_testid(browser, "prediction-compare", many=True))

    canvas = by_testid(browser, "canvas")
    # A 7: the bar with a pen, the downstroke with a finger.
    stroke(browser, canvas, [(-70, -90), (-20, -90), (30, -90), (70, -90)],
           interaction.POINTER_PEN)
    stroke(browser, canvas, [(70, -90), (45, -30), (20, 30), (0, 100)],
           interaction.POINTER_TOUCH)
    wait_for(browser, lambda: by_testid(browser, "prediction").text.strip().isdigit())
    time.sleep(1.0)  # the last stroke's answer may still be on its way
    wait_for(browser, lambda: not browser.execute_script("return state.inFlight"))

    shown = int(by_testid(browser, "prediction").text)
    probabilities = page_probabilities(browser)
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3
    assert shown == max(range(10), key=probabilities.__getitem__)
    # The page shows what the server answers for exactly the pixels on the canvas.
    payload = browser.execute_script("return drawingPayload()")
    answer = server_answer(address, names["hidden"], payload)
    assert answer["digit"] == shown
    assert probabilities == pytest.approx(answer["probabilities"], abs=1e-6)
    network_input_ink = browser.execute_script(
        "const c = document.querySelector('.network-input');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data)"
        ".filter((v, i) => i % 4 === 0).reduce((a, b) => a + b, 0);")
    assert network_input_ink > 0
    compared = server_answer(address, names["softmax"], payload)
    assert int(by_testid(browser, "prediction-compare").text) == compared["digit"]
    hidden_grid = browser.find_elements(By.CSS_SELECTOR, ".activations canvas")
    assert len(hidden_grid) == 1  # the hidden net's one layer; the regression has none

    # Undo both strokes: the canvas is empty and the answer is gone.
    by_testid(browser, "undo").click()
    by_testid(browser, "undo").click()
    wait_for(browser, lambda: by_testid(browser, "prediction").text.strip() == "–")

    # A confusion-matrix cell shows its misclassified test digits.
    cells = by_testid(browser, "confusion-cell", many=True)
    cell = max(cells, key=lambda each: int(each.text))
    count = int(cell.text)
    ActionChains(browser).scroll_to_element(cell).click(cell).perform()
    wait_for(browser, lambda: by_testid(browser, "error-digit", many=True))
    digits = by_testid(browser, "error-digit", many=True)
    assert len(digits) == min(count, 100)
    caption = digits[0].text
    assert f"{cell.get_attribute('data-true')} → {cell.get_attribute('data-pred')}" in caption
    assert "%" in caption
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_upload_an_image_and_a_file_that_is_not_one(server, browser):
    address, names = server
    browser.get(f"{address}?run={names['hidden']}")
    wait_for(browser, lambda: by_testid(browser, "confusion-cell", many=True))
    photo = Path(__file__).parent.parent / "docs" / "examples" / "photo-7.jpg"
    by_testid(browser, "upload").send_keys(str(photo))
    wait_for(browser, lambda: by_testid(browser, "prediction").text.strip().isdigit())
    request = Request(f"{address}api/runs/{names['hidden']}/predict-image",
                      data=photo.read_bytes(), headers={"Content-Type": "image/jpeg"})
    with urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert int(by_testid(browser, "prediction").text) == answer["digit"]
    assert page_probabilities(browser) == pytest.approx(answer["probabilities"], abs=1e-6)
    # The uploaded picture is shown where one draws: the canvas is no longer blank.
    wait_for(browser, lambda: browser.execute_script(
        "return Array.from(context.getImageData(0, 0, 280, 280).data)"
        ".some((value, i) => i % 4 === 0 && value < 128)"))

    by_testid(browser, "upload").send_keys(str(Path(__file__)))  # a Python file
    wait_for(browser, lambda: by_testid(browser, "message").is_displayed())
    assert "is not an image" in by_testid(browser, "message").text
    assert by_testid(browser, "prediction").text.strip() == "–"  # no stale answer


def draw_a_seven(browser) -> None:
    canvas = by_testid(browser, "canvas")
    stroke(browser, canvas, [(-70, -90), (-20, -90), (30, -90), (70, -90)],
           interaction.POINTER_PEN)
    stroke(browser, canvas, [(70, -90), (45, -30), (20, 30), (0, 100)],
           interaction.POINTER_PEN)
    wait_for(browser, lambda: by_testid(browser, "prediction").text.strip().isdigit())
    time.sleep(1.0)
    wait_for(browser, lambda: not browser.execute_script("return state.inFlight"))


def ink_of(browser, testid: str) -> int:
    """How many of a 28x28 canvas's pixels are not white."""
    return browser.execute_script(
        f"const c = document.querySelector('[data-testid=\"{testid}\"]');"
        "const d = c.getContext('2d').getImageData(0, 0, 28, 28).data; let n = 0;"
        "for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 750) n += 1;"
        "return n;")


def test_the_epoch_slider_replays_an_epoch_and_the_network_explains_itself(server, browser):
    address, names = server
    browser.get(f"{address}?run={names['hidden']}")
    wait_for(browser, lambda: by_testid(browser, "confusion-cell", many=True))
    slider = by_testid(browser, "epoch")
    assert slider.is_displayed()
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("1", "3")
    draw_a_seven(browser)

    # What the first layer's units look for, where the network looks, and the FGSM nudge.
    wait_for(browser, lambda: len(by_testid(browser, "unit", many=True)) == 24)
    assert ink_of(browser, "saliency") > 0 and ink_of(browser, "adversarial") > 0
    caption = by_testid(browser, "adversarial-caption").text
    assert "makes it say" in caption or "no nudge" in caption
    payload = browser.execute_script("return drawingPayload()")
    explained = json.loads(urlopen(Request(
        f"{address}api/runs/{names['hidden']}/explain", data=payload.encode(),
        headers={"Content-Type": "application/json"}), timeout=30).read())
    first_unit = by_testid(browser, "unit", many=True)[0].text
    assert first_unit.startswith(f"#{explained['units'][0]['unit']}:")

    # Epoch 1's answer replaces the newest one, the confusion matrix with it.
    newest = page_probabilities(browser)
    browser.execute_script("const s = document.getElementById('epoch'); s.value = '1';"
                           "s.dispatchEvent(new Event('input'));")
    wait_for(browser, lambda: page_probabilities(browser) != newest)
    wait_for(browser, lambda: not browser.execute_script("return state.inFlight"))
    epoch_one = json.loads(urlopen(Request(
        f"{address}api/runs/{names['hidden']}/predict?epoch=1", data=payload.encode(),
        headers={"Content-Type": "application/json"}), timeout=30).read())
    assert page_probabilities(browser) == pytest.approx(epoch_one["probabilities"], abs=1e-6)
    assert by_testid(browser, "epoch-label").text == "1"
    wait_for(browser, lambda: "after epoch 1 " in by_testid(browser, "confusion-summary").text)


@pytest.fixture(scope="module")
def empty_server(mnist_path, tmp_path_factory):
    """`mnist serve` on an output root with no run yet, its page trainings on 600 digits."""
    folder = tmp_path_factory.mktemp("serve-train")
    (folder / "outputs").mkdir()
    base = write_tiny_config(folder / "base.yaml", mnist_path, folder / "elsewhere",
                             data={"subset": {"train": 600, "test": 200}})
    process, address = start_mnist_serve(folder / "outputs", "--train-config", str(base))
    yield address, folder / "outputs"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)


def test_a_training_started_from_the_page_shows_its_curve(empty_server, browser):
    address, root = empty_server
    browser.get(address)
    wait_for(browser, lambda: "No run yet" in by_testid(browser, "message").text)
    Select(by_testid(browser, "train-layers")).select_by_value("784-30-10")
    epochs = by_testid(browser, "train-epochs")
    epochs.clear()
    epochs.send_keys("1")
    by_testid(browser, "train-start").click()
    wait_for(browser, lambda: "finished" in by_testid(browser, "train-status").text, 120)
    run = next(root.iterdir())
    assert run.name.startswith("page-784-30-10-") and (run / "metrics.json").is_file()
    # The page shows the new run, with its one epoch on the curves and its answers.
    wait_for(browser, lambda: Select(by_testid(browser, "run")).first_selected_option
             .get_attribute("value") == run.name)
    wait_for(browser, lambda: len(by_testid(browser, "curves").find_elements(
        By.CSS_SELECTOR, "circle.train")) == 2)  # one point on the loss and accuracy plots
    wait_for(browser, lambda: by_testid(browser, "confusion-cell", many=True))
    assert "1 (batch" in by_testid(browser, "glance").text
