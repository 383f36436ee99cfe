"""The browse page: the catalog grid with genre filters and title search, a movie's own URL with
labelled vs predicted genres, the label audit; its routes, and the page driven in Chromium."""

from __future__ import annotations

import shutil
import time

import pytest
from _chromium import NO_BROWSER, browser, data_ids
from _serving import index_with_heads, page_in_chromium, running_service
from fastapi.testclient import TestClient

from embedgenre.serve import create_app

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out


@pytest.fixture(scope="module")
def index_dir(fixture_index_dir, tmp_path_factory):
    """A copy of the fixture index with trained heads (the service and client of conftest)."""
    return index_with_heads(fixture_index_dir, tmp_path_factory.mktemp("browse") / "index")


def _audit(client, k=50, deadline_s=300) -> dict:
    """GET /v1/audit until the background audit has finished (202 until then)."""
    end = time.monotonic() + deadline_s
    while True:
        r = client.get(f"/v1/audit?k={k}")
        if r.status_code != 202:
            assert r.status_code == 200, r.text
            return r.json()
        assert r.headers["Retry-After"] and time.monotonic() < end, "the audit never finished"
        time.sleep(0.5)


def test_items_search_by_title(client, service):
    items = service.current.index.items
    title = next(it["title"] for it in items if it.get("title"))
    word = title.split()[0].lower()
    doc = client.get("/v1/items", params={"q": word, "per_page": 100}).json()
    want = [it["id"] for it in items if word in (it.get("title") or "").lower()]
    assert doc["total"] == len(want) and [i["id"] for i in doc["items"]] == want
    comedy = client.get("/v1/items", params={"q": word, "genre": "Comedy"}).json()
    assert all("Comedy" in i["genres"] for i in comedy["items"])
    assert client.get("/v1/items", params={"q": "no such title at all"}).json()["total"] == 0


def test_movie_genres_mark_the_disagreements(client, service):
    item = service.current.index.items[0]
    doc = client.get(f"/v1/items/{item['id']}/genres").json()
    assert doc["labelled"] == item["genres"]
    assert doc["predicted"] == [g["genre"] for g in doc["ranking"] if g["predicted"]]
    assert doc["labelled_not_predicted"] == [
        g for g in doc["labelled"] if g not in doc["predicted"]
    ]
    assert doc["predicted_not_labelled"] == [
        g for g in doc["predicted"] if g not in doc["labelled"]
    ]
    assert set(doc["why"]) == set(doc["labelled"]) | set(doc["predicted"])
    assert all(n["id"] != item["id"] for found in doc["why"].values() for n in found)
    r = client.get("/v1/items/tt0000000/genres")
    assert r.status_code == 404 and "No item" in r.json()["error"]


def test_audit_route_runs_once_in_the_background(client):
    doc = _audit(client, k=7)
    assert len(doc["findings"]) == 7 and doc["head"]["spec"]
    q = [f["quality"] for f in doc["findings"]]
    assert q == sorted(q) and all(f["thumbnail"] for f in doc["findings"])
    again = client.get("/v1/audit?k=3")  # answered from the finished audit
    assert again.status_code == 200 and again.json()["findings"] == doc["findings"][:3]
    assert client.get("/v1/audit?k=0").status_code == 400


@pytest.mark.skipif(browser() is None, reason=NO_BROWSER)
def test_browse_page_in_chromium(service, client, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    index = service.current.index
    css = By.CSS_SELECTOR
    audit_doc = _audit(client)  # the page then shows the finished audit at once

    def tiles(d, where):
        return data_ids(d, where + " .tile")

    with page_in_chromium(service, tmp_path / "profile") as (url, driver, wait):
        # the catalog grid, a page at a time
        driver.get(url + "/")
        wait.until(lambda d: len(tiles(d, "#catalog-grid")) == 48)
        assert driver.find_element(By.ID, "catalog-count").text.startswith(
            f"{len(index.ids)} movies"
        )
        driver.find_element(By.ID, "catalog-more").click()
        wait.until(lambda d: len(tiles(d, "#catalog-grid")) == 96)
        # a genre filter
        n_comedy = sum("Comedy" in (it["genres"] or []) for it in index.items)
        driver.find_element(css, '#genre-chips .chip[data-genre="Comedy"]').click()
        wait.until(
            lambda d: d.find_element(By.ID, "catalog-count").text.startswith(
                f"{n_comedy} movies · Comedy"
            )
        )
        shown = tiles(driver, "#catalog-grid")
        assert shown and all("Comedy" in index.items[index.row_of[i]]["genres"] for i in shown)
        chip = driver.find_element(css, '#genre-chips .chip[data-genre="Comedy"]')
        assert chip.get_attribute("aria-pressed") == "true"

        # a movie's own URL, opened directly
        item = index.items[3]
        driver.get(url + f"/#/movie/{item['id']}")
        want_title = item["title"] + (f" ({item['year']})" if item.get("year") else "")
        wait.until(lambda d: d.find_element(By.ID, "movie-title").text == want_title)
        wait.until(lambda d: len(tiles(d, "#movie-similar")) == 12)
        doc = client.get(f"/v1/items/{item['id']}/genres").json()
        labelled = driver.find_elements(css, "#movie-labelled .chip")
        assert [c.text[:-2] for c in labelled] == doc["labelled"]
        marked = [c.text[:-2] for c in labelled if "disagree" in c.get_attribute("class")]
        assert marked == doc["labelled_not_predicted"]
        added = driver.find_elements(css, "#movie-predicted .chip.disagree")
        assert [c.text[:-2] for c in added] == doc["predicted_not_labelled"]
        assert driver.find_elements(css, "#movie-bars li")
        assert "Why" in driver.find_element(By.ID, "view-movie").text
        assert not driver.find_element(By.ID, "view-home").is_displayed()
        wait.until(
            lambda d: d.execute_script(
                "const i = document.getElementById('movie-poster');"
                "return i.complete && i.naturalWidth > 0"
            )
        )

        # more like this -> another movie's page; Back returns to the first
        other = tiles(driver, "#movie-similar")[0]
        driver.find_element(css, f'#movie-similar .tile[data-id="{other}"]').click()
        wait.until(lambda d: d.current_url.endswith(f"#/movie/{other}"))
        other_item = index.items[index.row_of[other]]
        wait.until(
            lambda d: d.find_element(By.ID, "movie-title").text.startswith(
                other_item["title"] or other
            )
        )
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "movie-title").text == want_title)
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "view-home").is_displayed())

        # keyboard: "/" jumps to the filter, Enter on a tile opens its page
        driver.find_element(css, '#genre-chips .chip[data-genre=""]').click()  # all genres
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("/")
        wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "filter")
        word = item["title"].split()[0]
        driver.switch_to.active_element.send_keys(word, Keys.ENTER)
        wait.until(lambda d: f"“{word}”" in d.find_element(By.ID, "catalog-count").text)
        wait.until(lambda d: item["id"] in tiles(d, "#catalog-grid"))
        tile = driver.find_element(css, f'#catalog-grid .tile[data-id="{item["id"]}"]')
        tile.send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "movie-title").text == want_title)

        # the audit list
        driver.find_element(By.ID, "nav-audit").click()
        wait.until(lambda d: d.find_elements(css, "#audit-list li"))
        rows = driver.find_elements(css, "#audit-list li")
        assert data_ids(driver, "#audit-list li") == [f["id"] for f in audit_doc["findings"]]
        first = audit_doc["findings"][0]
        assert first["issues"][0]["genre"] in rows[0].text
        rows[0].find_element(By.TAG_NAME, "a").click()
        wait.until(lambda d: d.current_url.endswith(f"#/movie/{first['id']}"))
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "view-audit").is_displayed())
        driver.save_screenshot(str(tmp_path / "audit.png"))


# The page's fetch, wrapped so that catalog requests without a filter answer 1.5 s late: a
# filter asked for after them is answered first, and the late answer must not replace it.
# lateAnswered counts late answers the page has finished with: it is raised in a task queued
# when the page reads the answer's body, so it runs after everything the page does with it.
SLOW_UNFILTERED = """
const real = window.fetch;
window.lateAnswered = 0;
window.fetch = async (url, options) => {
  const answer = await real(url, options);
  if (String(url).startsWith("/v1/items?") && !String(url).includes("&q=")) {
    await new Promise((done) => setTimeout(done, 1500));
    const read = answer.json.bind(answer);
    answer.json = async () => {
      const body = await read();
      setTimeout(() => { window.lateAnswered += 1; }, 0);
      return body;
    };
  }
  return answer;
};
"""


@pytest.mark.skipif(browser() is None, reason=NO_BROWSER)
def test_a_late_answer_never_replaces_a_newer_filter(service, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    index = service.current.index
    item = next(it for it in index.items if it.get("title") and len(it["title"].split()[0]) > 3)
    word = item["title"].split()[0]
    with page_in_chromium(service, tmp_path / "profile") as (url, driver, wait):
        driver.get(url + "/")
        wait.until(lambda d: len(data_ids(d, "#catalog-grid .tile")) == 48)
        driver.execute_script(SLOW_UNFILTERED)
        driver.find_element(By.CSS_SELECTOR, '#genre-chips .chip[data-genre=""]').click()
        box = driver.find_element(By.ID, "filter")
        box.send_keys(word, Keys.ENTER)  # asked after the slow unfiltered page
        wait.until(lambda d: d.execute_script("return window.lateAnswered") == 1)
        count = driver.find_element(By.ID, "catalog-count").text
        assert f"“{word}”" in count, count
        shown = data_ids(driver, "#catalog-grid .tile")
        titles = {index.ids[r]: index.items[r].get("title") or "" for r in range(len(index.ids))}
        assert shown and all(word.lower() in (titles[i] + " " + i).lower() for i in shown), shown


@pytest.fixture(scope="module")
def headless_service(fixture_index_dir, tmp_path_factory):
    """A service over a copy of the fixture index as built: no trained head, and posters by
    EfficientNet (no CLIP, so no zero-shot either)."""
    index_dir = tmp_path_factory.mktemp("no-head") / "index"
    shutil.copytree(fixture_index_dir, index_dir)
    with running_service(index_dir) as svc:
        yield svc


def test_movie_without_a_head_shows_its_labels_and_what_predictions_need(headless_service):
    svc = headless_service
    item = next(it for it in svc.current.index.items if it.get("genres"))
    with TestClient(create_app(svc.config, svc), base_url="http://localhost") as client:
        r = client.get(f"/v1/items/{item['id']}/genres")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["title"] == item["title"] and doc["labelled"] == item["genres"]
        assert doc["head"] is None and doc["predicted"] == [] and doc["why"] == {}
        assert "embedgenre train" in doc["no_predictions"]
        sim = client.get(f"/v1/similar?k=5&id={item['id']}")
        assert sim.status_code == 200 and len(sim.json()["neighbours"]) == 5
        # a head asked for by name that is not there is still an error
        assert client.get(f"/v1/items/{item['id']}/genres?head=nope").status_code == 404


@pytest.mark.skipif(browser() is None, reason=NO_BROWSER)
def test_movie_page_without_a_head_in_chromium(headless_service, tmp_path):
    from selenium.webdriver.common.by import By

    svc = headless_service
    item = next(it for it in svc.current.index.items if it.get("genres") and it.get("title"))
    with page_in_chromium(svc, tmp_path / "profile") as (url, driver, wait):
        driver.get(url + f"/#/movie/{item['id']}")
        want_title = item["title"] + (f" ({item['year']})" if item.get("year") else "")
        wait.until(lambda d: d.find_element(By.ID, "movie-title").text == want_title)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#movie-similar .tile")) == 12)
        chips = driver.find_elements(By.CSS_SELECTOR, "#movie-labelled .chip")
        assert [c.text for c in chips] == item["genres"]
        assert "trained head" in driver.find_element(By.ID, "movie-predicted").text
        assert "embedgenre train" in driver.find_element(By.ID, "movie-note").text
        assert not driver.find_element(By.ID, "error").is_displayed()
