from django.http import JsonResponse
from django.urls import path


def healthz(request):
    """The same small JSON body as authserver's /healthz, with nothing around it."""
    return JsonResponse({"status": "ok"})


urlpatterns = [path("healthz", healthz)]
