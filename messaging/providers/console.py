"""The embedded default: nothing leaves the machine; the message is kept for people to read.

``/console`` in the app shows what each customer would have received (text and images).
"""

from __future__ import annotations

from messaging.providers.base import Capabilities, OutboundMessage, Provider, SendResult


class ConsoleProvider(Provider):
    name = "console"
    # Twilio's MMS limits, with a body as short as an SMS: it shows what would be sent.
    capabilities = Capabilities(
        supports_mms=True,
        max_body_chars=500,
        max_media=10,
        max_total_bytes=5 * 1024 * 1024,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_types=frozenset({"video/mp4"}),
    )

    def send(self, message: OutboundMessage) -> SendResult:
        # The message row already holds the text and media: that is the console's record.
        return SendResult(provider_message_id=f"console-{message.message_id}", status="sent")
