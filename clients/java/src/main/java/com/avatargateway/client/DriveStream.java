package com.avatargateway.client;

import com.avatargateway.gateway.v1.AudioFormat;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.DriveConfig;
import com.avatargateway.gateway.v1.DriveRequest;
import com.avatargateway.gateway.v1.DriveResponse;
import com.avatargateway.gateway.v1.DriveStarted;
import com.avatargateway.gateway.v1.EndTurn;
import com.avatargateway.gateway.v1.Interrupt;
import com.avatargateway.gateway.v1.TextInput;
import com.google.protobuf.ByteString;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A blocking view of one Drive call over the async stub.
 *
 * <p>{@link #open} sends the config first, as the protocol requires, and waits for {@code started}.
 * Then one thread may send ({@link #sendAudio}, {@link #sendPaced}, {@link #endTurn}, ...; sends
 * wait while gRPC flow control holds the stream) while another reads events with {@link #next}.
 * A failed call surfaces as a {@link StatusRuntimeException}; {@link ErrorInfos#fromThrowable}
 * decodes its reason.
 */
public final class DriveStream implements AutoCloseable {
  /** Largest audio request the API accepts ({@code DriveRequest.audio}). */
  public static final int DEFAULT_MAX_AUDIO_CHUNK_BYTES = 65536;

  private static final Object END = new Object();

  private final LinkedBlockingQueue<Object> inbox = new LinkedBlockingQueue<>();
  private final CompletableFuture<Status> status = new CompletableFuture<>();
  private final Object ready = new Object();
  private volatile ClientCallStreamObserver<DriveRequest> requests;
  private volatile DriveStarted started;
  private Object terminal;

  private DriveStream() {}

  /**
   * Opens a Drive call on {@code session} ("sessions/{id}"), sends the config and waits for the
   * server's {@code started}. {@code format} may be null for a text-only stream. Configure the
   * deadline on the stub ({@code stub.withDeadlineAfter(...)}).
   *
   * @throws StatusRuntimeException when the server rejects the config
   */
  public static DriveStream open(AvatarGatewayGrpc.AvatarGatewayStub stub, String session, AudioFormat format)
      throws InterruptedException {
    return open(stub, session, format, false);
  }

  /** As {@link #open(AvatarGatewayGrpc.AvatarGatewayStub, String, AudioFormat)}, with {@code preempt}. */
  public static DriveStream open(
      AvatarGatewayGrpc.AvatarGatewayStub stub, String session, AudioFormat format, boolean preempt)
      throws InterruptedException {
    DriveStream d = openRaw(stub);
    DriveConfig.Builder config = DriveConfig.newBuilder().setSession(session).setPreempt(preempt);
    if (format != null) {
      config.setAudioFormat(format);
    }
    d.send(DriveRequest.newBuilder().setConfig(config).build());
    DriveResponse first = d.next();
    if (first == null || !first.hasStarted()) {
      d.cancel("unexpected first response");
      throw Status.INTERNAL.withDescription("first Drive response is not started: " + first).asRuntimeException();
    }
    d.started = first.getStarted();
    return d;
  }

  /** Opens a Drive call without sending anything (use {@link #open} for the usual way). */
  public static DriveStream openRaw(AvatarGatewayGrpc.AvatarGatewayStub stub) {
    DriveStream d = new DriveStream();
    d.requests =
        (ClientCallStreamObserver<DriveRequest>) stub.drive(d.new Observer());
    return d;
  }

  /** The server's answer to the config (null for {@link #openRaw}). */
  public DriveStarted started() {
    return started;
  }

  /**
   * The next event; null once the call has ended with OK.
   *
   * @throws StatusRuntimeException when the call failed
   */
  public DriveResponse next() throws InterruptedException {
    return next(null);
  }

  /**
   * The next event, waiting at most {@code timeout} (null: no limit).
   *
   * @throws TimeoutRuntimeException when nothing arrived in time
   */
  public synchronized DriveResponse next(Duration timeout) throws InterruptedException {
    if (terminal == null) {
      Object item =
          timeout == null ? inbox.take() : inbox.poll(timeout.toNanos(), TimeUnit.NANOSECONDS);
      if (item == null) {
        throw new TimeoutRuntimeException("no Drive event within " + timeout);
      }
      if (item instanceof DriveResponse r) {
        return r;
      }
      terminal = item;
    }
    if (terminal instanceof StatusRuntimeException e) {
      throw e;
    }
    return null;
  }

  /** The call's final status, waiting at most {@code timeout}. */
  public Status awaitStatus(Duration timeout) throws InterruptedException, TimeoutException {
    try {
      return status.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
    } catch (ExecutionException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Whether the call has ended. */
  public boolean isDone() {
    return status.isDone();
  }

  /** Sends one request, waiting while flow control holds the stream. */
  public void send(DriveRequest request) throws InterruptedException {
    synchronized (ready) {
      while (!requests.isReady() && !status.isDone()) {
        ready.wait(100);
      }
      if (status.isDone()) {
        throw new IllegalStateException("the Drive call has ended");
      }
      requests.onNext(request);
    }
  }

  /** Sends PCM in the configured format, split into requests the server accepts. */
  public void sendAudio(byte[] pcm) throws InterruptedException {
    int max = started != null && started.getMaxAudioChunkBytes() > 0
        ? started.getMaxAudioChunkBytes()
        : DEFAULT_MAX_AUDIO_CHUNK_BYTES;
    for (int off = 0; off < pcm.length; off += max) {
      int n = Math.min(max, pcm.length - off);
      send(DriveRequest.newBuilder().setAudio(ByteString.copyFrom(pcm, off, n)).build());
    }
  }

  /** Sends {@code audio} at real time in chunks of {@code chunk} (20–100 ms is typical). */
  public void sendPaced(Audio audio, Duration chunk) throws InterruptedException {
    Pacer.pace(audio, chunk, this::sendAudio);
  }

  /** Text for the vendor's TTS; {@code last} ends the turn. */
  public void sendText(String text, boolean last) throws InterruptedException {
    send(DriveRequest.newBuilder().setText(TextInput.newBuilder().setText(text).setFinal(last)).build());
  }

  /** The current turn is complete: the server flushes it and tells the vendor. */
  public void endTurn() throws InterruptedException {
    send(DriveRequest.newBuilder().setEndTurn(EndTurn.getDefaultInstance()).build());
  }

  /** Barge-in: drop queued audio and stop the avatar; answered by an {@code interrupted} event. */
  public void interrupt() throws InterruptedException {
    send(DriveRequest.newBuilder().setInterrupt(Interrupt.getDefaultInstance()).build());
  }

  /** Half-closes: the server finishes the current turn, then ends the call with OK. */
  public void halfClose() {
    synchronized (ready) {
      requests.onCompleted();
    }
  }

  /** Abandons the call (status CANCELLED). */
  public void cancel(String why) {
    requests.cancel(why, null);
  }

  /** Cancels the call if it is still open. */
  @Override
  public void close() {
    if (!status.isDone()) {
      cancel("closed by the client");
    }
  }

  /** Thrown by {@link #next(Duration)} when no event arrived in time. */
  public static final class TimeoutRuntimeException extends RuntimeException {
    TimeoutRuntimeException(String message) {
      super(message);
    }
  }

  private final class Observer implements ClientResponseObserver<DriveRequest, DriveResponse> {
    @Override
    public void beforeStart(ClientCallStreamObserver<DriveRequest> requestStream) {
      requestStream.setOnReadyHandler(
          () -> {
            synchronized (ready) {
              ready.notifyAll();
            }
          });
    }

    @Override
    public void onNext(DriveResponse value) {
      inbox.add(value);
    }

    @Override
    public void onError(Throwable t) {
      Status s = Status.fromThrowable(t);
      StatusRuntimeException e =
          t instanceof StatusRuntimeException sre ? sre : s.asRuntimeException(Status.trailersFromThrowable(t));
      status.complete(s);
      inbox.add(e);
      wake();
    }

    @Override
    public void onCompleted() {
      status.complete(Status.OK);
      inbox.add(END);
      wake();
    }

    private void wake() {
      synchronized (ready) {
        ready.notifyAll();
      }
    }
  }
}
