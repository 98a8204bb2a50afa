from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class HelloApi(APIView):
    """Any valid authserver access token for this API's audience gets in."""

    def get(self, request: Request) -> Response:
        return Response(
            {
                "sub": request.user.id,
                "client_id": request.auth.get("client_id"),
                "scope": request.auth.get("scope", ""),
            }
        )
