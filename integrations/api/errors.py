"""Errors the API's views raise beyond DRF's own."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the registry's current state."
    default_code = "conflict"
