"""Access reviews in REST API v1: staff start one now."""

from __future__ import annotations

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.accessreviews import flows
from integrations.api import schema
from integrations.api.errors import Conflict
from integrations.api.serializers import AccessReviewSerializer
from integrations.api.views import ServerChildMixin, acting_for
from integrations.models import AccessReview


@schema.access_review
class AccessReviewStartView(ServerChildMixin, APIView):
    """Start a review of the server now (scope manage, or staff allowed to
    add access reviews): 201, or 409 naming why not."""

    permission_model = AccessReview
    staff_permission = "add"

    def post(self, request: Request, server_id: int) -> Response:
        server = self.get_server()
        with acting_for(request) as actor:
            try:
                started = flows.start_review(server, started_by=actor.display)
            except flows.ReviewRefused as exc:
                raise Conflict(str(exc), code=exc.code) from None
        return Response(
            AccessReviewSerializer(started.review).data,
            status=status.HTTP_201_CREATED,
        )
