import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Instant;

/**
 * An upstream Java service publishing orders with nothing but the JDK: the
 * JSON written by hand, {@code date_created} as {@code Instant.now().toString()}
 * (UTC, {@code Z}, 0, 3, 6 or 9 fractional digits), and the NATS text protocol
 * over a plain socket, since no NATS Java client can be had here. Its schema
 * grew two fields the order service does not know ({@code source_system},
 * and each item's {@code warehouse}), as upstream schemas do.
 *
 * <p>Each order is a PUB with a reply inbox, and the next waits for
 * JetStream's ack on it ({@code {"stream":...,"seq":...}}), as a JetStream
 * client's publish does.
 *
 * <pre>java Producer.java NATS_URL SUBJECT UID_PREFIX COUNT</pre>
 *
 * Prints every payload it published, one a line, once JetStream acked it.
 */
public final class Producer {
    private static final String INBOX = "_INBOX.order_cache_java_producer";

    private final InputStream in;
    private final OutputStream out;

    private Producer(Socket socket) throws IOException {
        in = new BufferedInputStream(socket.getInputStream());
        out = socket.getOutputStream();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: java Producer.java NATS_URL SUBJECT UID_PREFIX COUNT");
            System.exit(2);
        }
        URI url = URI.create(args[0]);
        String subject = args[1];
        String prefix = args[2];
        int count = Integer.parseInt(args[3]);
        try (Socket socket = new Socket(url.getHost(), url.getPort() == -1 ? 4222 : url.getPort())) {
            socket.setSoTimeout(10_000);
            Producer nats = new Producer(socket);
            nats.handshake();
            for (int n = 0; n < count; n++) {
                String payload = order(prefix + "-" + n, n);
                nats.publish(subject, payload);
                System.out.println(payload);
            }
        }
    }

    /** Reads INFO, sends CONNECT and SUB, and waits for the PONG that says both were taken. */
    private void handshake() throws IOException {
        String info = line();
        if (!info.startsWith("INFO ")) {
            throw new IOException("expected INFO, got " + info);
        }
        // headers and no_responders: a subject no stream takes is answered
        // at once with a 503 status, not with silence until the timeout.
        send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n"
                + "SUB " + INBOX + " 1\r\nPING\r\n");
        for (String l = line(); !l.equals("PONG"); l = line()) {
            control(l);
        }
    }

    /** Publishes one order and waits for JetStream's ack on the inbox. */
    private void publish(String subject, String payload) throws IOException {
        byte[] body = payload.getBytes(StandardCharsets.UTF_8);
        send("PUB " + subject + " " + INBOX + " " + body.length + "\r\n" + payload + "\r\n");
        while (true) {
            String l = line();
            if (!l.startsWith("MSG ") && !l.startsWith("HMSG ")) {
                control(l);
                continue;
            }
            // [H]MSG <subject> <sid> [reply-to] [#header bytes] <#total bytes>
            String[] parts = l.split(" ");
            byte[] ack = in.readNBytes(Integer.parseInt(parts[parts.length - 1]));
            line();
            String text = new String(ack, StandardCharsets.UTF_8);
            if (l.startsWith("HMSG ")) {
                throw new IOException("no JetStream stream takes " + subject + ": " + text.strip());
            }
            if (!text.contains("\"seq\"") || text.contains("\"error\"")) {
                throw new IOException("JetStream did not take the order: " + text);
            }
            return;
        }
    }

    /** Answers what the server may send between our messages. */
    private void control(String l) throws IOException {
        if (l.equals("PING")) {
            send("PONG\r\n");
        } else if (l.startsWith("-ERR")) {
            throw new IOException("server says " + l);
        } else if (!l.equals("+OK") && !l.equals("PONG") && !l.startsWith("INFO ")) {
            throw new IOException("unexpected from the server: " + l);
        }
    }

    private void send(String text) throws IOException {
        out.write(text.getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** One protocol line, without its CRLF. */
    private String line() throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        for (int b = in.read(); b != '\n'; b = in.read()) {
            if (b == -1) {
                throw new IOException("the server closed the connection");
            }
            if (b != '\r') {
                buf.write(b);
            }
        }
        return buf.toString(StandardCharsets.UTF_8);
    }

    /** The example order with this id, written by hand. */
    private static String order(String uid, int n) {
        return "{\"order_uid\":" + str(uid)
                + ",\"track_number\":\"WBILMTESTTRACK\",\"entry\":\"WBIL\""
                + ",\"delivery\":{\"name\":\"Test Testov\",\"phone\":\"+9720000000\",\"zip\":\"2639809\""
                + ",\"city\":\"Kiryat Mozkin\",\"address\":\"Ploshad Mira 15\",\"region\":\"Kraiot\""
                + ",\"email\":\"test@gmail.com\"}"
                + ",\"payment\":{\"transaction\":" + str(uid)
                + ",\"request_id\":\"\",\"currency\":\"USD\",\"provider\":\"wbpay\",\"amount\":1817"
                + ",\"payment_dt\":1637907727,\"bank\":\"alpha\",\"delivery_cost\":1500"
                + ",\"goods_total\":317,\"custom_fee\":0}"
                + ",\"items\":[{\"chrt_id\":9934930,\"track_number\":\"WBILMTESTTRACK\",\"price\":453"
                + ",\"rid\":\"ab4219087a764ae0btest\",\"name\":\"Mascaras\",\"sale\":30,\"size\":\"0\""
                + ",\"total_price\":317,\"nm_id\":2389212,\"brand\":\"Vivienne Sabo\",\"status\":202"
                + ",\"warehouse\":" + str("WH-" + (n % 5)) + "}]"
                + ",\"locale\":\"en\",\"internal_signature\":\"\",\"customer_id\":\"test\""
                + ",\"delivery_service\":\"meest\",\"shardkey\":\"9\",\"sm_id\":99"
                + ",\"date_created\":" + str(Instant.now().toString())
                + ",\"oof_shard\":\"1\",\"source_system\":\"erp\"}";
    }

    /** A JSON string of text that needs no escapes (ids, dates). */
    private static String str(String s) {
        if (!s.matches("[A-Za-z0-9_.:+-]*")) {
            throw new IllegalArgumentException("would need JSON escapes: " + s);
        }
        return "\"" + s + "\"";
    }
}
