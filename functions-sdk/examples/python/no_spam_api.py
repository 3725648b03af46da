"""A Basalt function in Python, for the `function` world of basalt:functions@0.1.0:

- before a post is created or updated, refuse it when its title or body mentions
  spam (a 400 with a field error the client can show beside the field);
- `GET /api/functions/{name}/stats` answers how many posts the caller may list.

Build:  pip install componentize-py==0.25.1
        componentize-py -d ../../wit -w function componentize no_spam_api -o no_spam_api.wasm
Deploy: basalt functions deploy no_spam_api.wasm --name no-spam-py \\
          --trigger posts.before-create --trigger posts.before-update --trigger http
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports import hooks
from wit_world.imports import basalt_functions_types as types
from wit_world.imports import log, records
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def check(write: hooks.Write) -> hooks.Outcome:
    values = json.loads(write.values)
    for field in ("title", "body"):
        if "spam" in str(values.get(field) or "").lower():
            log.write(log.Level.WARN, "refused a spammy post", [("field", field)])
            return hooks.Outcome_Reject(
                types.Rejection(
                    message="Posts may not advertise spam.",
                    fields=[types.FieldError(field=field, code="validation_no_spam", message="Remove the word `spam`.")],
                )
            )
    return hooks.Outcome_Unchanged()


class Hooks(exports.Hooks):
    def before_create(self, write: hooks.Write) -> hooks.Outcome:
        return check(write)

    def before_update(self, write: hooks.Write) -> hooks.Outcome:
        return check(write)

    def before_delete(self, write: hooks.Write) -> hooks.Outcome:
        return hooks.Outcome_Unchanged()


def send(response_out: ResponseOutparam, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with outgoing.write() as stream:
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i : i + 4096])
    OutgoingBody.finish(outgoing, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if not path.startswith("/stats"):
            send(response_out, 404, {"message": "Try GET /stats."})
            return
        try:
            page = records.list(
                records.Acting.CALLER, "posts", records.ListQuery(filter=None, sort=None, page=1, per_page=1)
            )
            send(response_out, 200, {"visible": page.total_items})
        except Err as e:
            error: types.Error = e.value
            send(response_out, error.status, {"code": error.code, "message": error.message})
