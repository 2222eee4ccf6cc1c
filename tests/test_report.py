"""report.html in a real headless browser (Debian's chromium, driven by Playwright): the tree
renders, a click expands a collapsed node and shows a node's full text; a screenshot is saved."""

import shutil
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from seedtree.models.tiny import tiny_pair
from seedtree.report import write_report
from seedtree.search import EngineConfig, SearchConfig, Tree, solve
from seedtree.tasks import get_task

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pair = tiny_pair(seed=0, context=4096)
    task = get_task("gsm8k")
    tree = solve(
        pair,
        task,
        task.get(0),
        SearchConfig(k=3, b=2, depth=2),
        EngineConfig(method="seed-batched", max_new_tokens=8),
    )
    path = write_report(tree, tmp_path_factory.mktemp("report") / "report.html")
    return tree, path


def test_report_is_self_contained(report):
    tree, path = report
    text = path.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "<script src" not in text
    assert Tree.from_dict(tree.to_dict()).signature() == tree.signature()


def test_report_in_headless_chromium(report):
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make test` (it installs chromium)"
    tree, path = report
    collapsed = next(n for n in tree.nodes if n.children and n.id not in tree_path_ids(tree))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert not errors
        # the tree renders: one li per node, the chosen path highlighted
        assert page.locator("li.node").count() == len(tree.nodes)
        assert page.locator(".label.chosen").count() == len(tree_path_ids(tree))
        # a click on a collapsed node's toggle expands it: its children become visible
        li = page.locator(f"li.node[data-id='{collapsed.id}']")
        child = page.locator(f"li.node[data-id='{collapsed.children[0]}']")
        assert "collapsed" in li.get_attribute("class") and not child.is_visible()
        li.locator(":scope > .row > .toggle").click()
        assert "collapsed" not in li.get_attribute("class") and child.is_visible()
        # a click on a label shows the node's full text
        child.locator(":scope > .row > .label").click()
        detail = page.locator("#detail").inner_text()
        assert f"Node {collapsed.children[0]}" in detail
        assert tree.nodes[collapsed.children[0]].state.split("\n")[0][:30] in detail
        # one timeline per engine call, with interval bars
        assert page.locator("svg.timeline").count() == len(tree.calls)
        assert page.locator("svg.timeline rect").count() > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def tree_path_ids(tree) -> set[int]:
    return {n.id for n in tree.chosen_path()}
