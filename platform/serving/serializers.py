"""Schema-only serializers of the predict endpoints (the bodies are checked by serving/validation.py, which
names each field in its 400; these describe them to drf-spectacular)."""
from __future__ import annotations

from rest_framework import serializers


class PairInputSerializer(serializers.Serializer):
    text_a = serializers.CharField()
    text_b = serializers.CharField()


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant"])
    content = serializers.CharField(help_text="Text (a list of {type: text, text} parts is read too)")


class PredictRequestSerializer(serializers.Serializer):
    inputs = serializers.ListField(child=serializers.JSONField(), required=False, max_length=1000, help_text=(
        "Classifiers: the texts (strings; {text_a, text_b} objects for a pair classifier), 1 to "
        "LATHE_INFERENCE_MAX_INPUTS (32) a request, each at most LATHE_INFERENCE_MAX_CHARS (8000) characters."))
    messages = ChatMessageSerializer(many=True, required=False, help_text=(
        "Chat models: the conversation (OpenAI's messages, text only), ending on a user message."))
    max_new_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1024, help_text="Chat: longest reply (128)")
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2, help_text="Chat: 0 is greedy (default)")
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, help_text="Chat: sampling seed")


class JobPredictRequestSerializer(PredictRequestSerializer):
    artifact = serializers.CharField(required=False, max_length=100, help_text=(
        "Which of the job's model archives: model.zip (default), model-onnx-int8.zip, …"))


class LabelScoreSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField()


class PredictionSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField(help_text="The probability of `label`")
    scores = LabelScoreSerializer(many=True, help_text="Every label's probability, most likely first")


class ServedModelSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="job-12/model.zip or upload-3")
    name = serializers.CharField()
    variant = serializers.CharField(help_text="fp32, torch_int8 or onnx_int8")
    family = serializers.CharField(help_text="classifier or chat")
    reference = serializers.DictField(help_text="The request form naming this model")


class ReplySerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class TokenUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class PredictResponseSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["predictions", "chat.reply"])
    id = serializers.IntegerField(help_text="The inference request's id")
    model = ServedModelSerializer()
    warm = serializers.BooleanField(help_text="The model was already loaded on the worker (false: this request loaded it)")
    latency_ms = serializers.FloatField(help_text="Server side, total: from the request's checks to the answer")
    worker_ms = serializers.FloatField(help_text="Worker time (billed), model load included when cold")
    load_ms = serializers.FloatField()
    device_class = serializers.CharField()
    results = PredictionSerializer(many=True, required=False, help_text="Classifiers: one per input, in order")
    reply = ReplySerializer(required=False, help_text="Chat models")
    finish_reason = serializers.ChoiceField(choices=["stop", "length"], required=False)
    usage = TokenUsageSerializer(required=False)
