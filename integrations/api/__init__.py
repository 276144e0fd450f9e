"""REST API v1: the uploader's access question and the management API.

``urls`` mounts everything under ``/api/``; ``auth`` holds the two credentials
programs use (API keys and the uploader's signed user tokens).
"""
