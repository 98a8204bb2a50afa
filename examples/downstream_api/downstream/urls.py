from django.urls import path

from downstream.views import HelloApi

urlpatterns = [path("hello", HelloApi.as_view(), name="hello")]
