"""How the API answers a service's refusal: the error's class picks the status, never its words.

Services raise app.services.ServiceError subclasses; a view passes the error to `status_of`,
so an address that is taken answers 409 and a malformed one 422 whatever the sentences say.
"""

from __future__ import annotations

from app.services import Conflict, Invalid, NotFound, ServiceError

STATUS_OF_CODE = {Invalid.code: 422, Conflict.code: 409, NotFound.code: 404}


def status_of(error: ServiceError) -> int:
    """The HTTP status for a service error: 409 conflict, 404 not found, else 422."""
    return STATUS_OF_CODE.get(error.code, 422)
