"""`/_local/stats`: the counters tests and benchmarks use to catch duplicate paid submissions."""

from __future__ import annotations

import copy

import httpx

from novita_local.stats import content_hash
from tests.novita_local.helpers import StartServer, http, submit, valid_body, wait_done


def test_counts_submissions_polls_downloads_and_statuses(start_server: StartServer) -> None:
    server = start_server()
    body = valid_body(image_num=2)
    with http(server) as client:
        first = submit(client, body)
        second = submit(client, body)  # a duplicate paid submission
        submit(client, valid_body(seed=43))
        client.post("/v3/async/inpainting", json=valid_body(steps=0))
        client.post("/v3/async/inpainting", content=b"{")
        result = wait_done(client, first)
        for image in result["images"]:
            client.get(image["image_url"])
        client.get(result["images"][0]["image_url"] + "0")  # bad signature
        wait_done(client, second)
        client.get("/v3/async/task-result", params={"task_id": "unknown"})
        stats = client.get("/_local/stats").json()

    submissions = stats["submissions"]
    assert submissions["total"] == 5
    assert submissions["accepted"] == 3
    assert submissions["rejected"] == {"INVALID_REQUEST_BODY": 2}
    by_hash = submissions["by_content_hash"]
    assert by_hash[content_hash(body)] == {"submitted": 2, "accepted": 2}
    assert by_hash[content_hash(valid_body(seed=43))] == {"submitted": 1, "accepted": 1}
    assert by_hash[content_hash(valid_body(steps=0))] == {"submitted": 1, "accepted": 0}
    assert len(by_hash) == 3  # the non-JSON body has no content hash
    assert stats["polls"]["by_task"][first] >= 1 and stats["polls"]["by_task"]["unknown"] == 1
    assert stats["polls"]["total"] == sum(stats["polls"]["by_task"].values())
    assert stats["downloads"]["by_task"] == {first: 2}
    assert stats["downloads"]["refused"]["signature"] == 1
    assert stats["tasks"] == {
        "total": 3,
        "by_status": {
            "TASK_STATUS_QUEUED": stats["tasks"]["by_status"]["TASK_STATUS_QUEUED"],
            "TASK_STATUS_PROCESSING": stats["tasks"]["by_status"]["TASK_STATUS_PROCESSING"],
            "TASK_STATUS_SUCCEED": stats["tasks"]["by_status"]["TASK_STATUS_SUCCEED"],
            "TASK_STATUS_FAILED": 0,
        },
    }
    assert stats["tasks"]["by_status"]["TASK_STATUS_SUCCEED"] >= 2
    assert set(stats) == {
        "profile", "fault_seed", "restarts", "submissions", "auth_refused", "billing",
        "rate_limited", "faults", "polls", "downloads", "webhooks", "tasks",
    }  # fmt: skip
    assert stats["profile"] == "novita"
    assert stats["billing"] == {"balance": None, "spent": 5}  # 2 + 2 + 1 images accepted
    assert stats["auth_refused"] == {"MISSING_API_KEY": 0, "INVALID_API_KEY": 0}


def test_content_hash_covers_every_parameter_and_ignores_nulls() -> None:
    body = valid_body()
    same = copy.deepcopy(body)
    same["request"]["mask_blur"] = None  # null equals absent
    same["request"] = dict(reversed(list(same["request"].items())))  # key order is irrelevant
    assert content_hash(same) == content_hash(body)
    for field, value in [("seed", 43), ("prompt", "other"), ("image_base64", "AAAA")]:
        changed = copy.deepcopy(body)
        changed["request"][field] = value
        assert content_hash(changed) != content_hash(body), field
    other_type = copy.deepcopy(body)
    other_type["extra"]["response_image_type"] = "jpeg"
    assert content_hash(other_type) != content_hash(body)
    assert content_hash(["not", "a", "body"]) != content_hash(body)


def test_stats_route_is_in_the_schema_and_free(client: httpx.Client) -> None:
    assert "/_local/stats" in client.get("/openapi.json").json()["paths"]
    assert client.get("/_local/stats").status_code == 200
