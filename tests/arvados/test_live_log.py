"""The double's live log endpoint: a running container's log files, as the controller serves them."""

from __future__ import annotations

from typing import Any, Dict

import requests
import urllib3

from .double import ArvadosDouble
from .test_double import Client, container_request, make_image, new_user


def test_a_running_containers_log_is_served_to_who_may_read_the_request(
        arvados_double: ArvadosDouble, arvados_client: Client, hello_world_image: Dict[str, Any]) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    owner, other = new_user(arvados_double, arvados_client), new_user(arvados_double, arvados_client)
    image = make_image(owner["api"], hello_world_image, [])["portable_data_hash"]
    request = owner["api"].container_requests().create(body=container_request(image)).execute()
    container = request["container_uuid"]
    arvados_double.set_container_state(container, "Running")
    arvados_double.write_live_log(container, "stderr.txt", "starting\n")
    arvados_double.write_live_log(container, "stderr.txt", "working\n")
    url = f"https://{arvados_double.host}/arvados/v1/container_requests/{request['uuid']}/log/{container}/stderr.txt"

    def get(token: str, **headers: str) -> requests.Response:
        return requests.get(url, headers=dict(headers, Authorization=f"Bearer {token}"), verify=False, timeout=30)

    whole = get(owner["token"])
    assert (whole.status_code, whole.text) == (200, "starting\nworking\n")
    part = get(owner["token"], Range="bytes=9-")
    assert (part.status_code, part.text, part.headers["Content-Range"]) == (206, "working\n", "bytes 9-16/17")
    assert get(other["token"]).status_code == 404  # cannot read the request
    assert get(owner["token"]).status_code == 200
    assert requests.get(url.replace(container, request["uuid"]), headers={"Authorization": f"Bearer {owner['token']}"},
                        verify=False, timeout=30).status_code == 404  # not that request's container
    assert requests.get(url, verify=False, timeout=30).status_code == 401
