// The chatroom page. Everything people type is put on the page with textContent, never parsed as HTML.
"use strict";

(function () {
  const ANSWER_TIMEOUT_MS = 5000;
  const $ = (id) => document.getElementById(id);
  const ui = {
    greeting: $("greeting"), status: $("status"),
    joinForm: $("join-form"), name: $("name"), join: $("join"), joinError: $("join-error"),
    messages: $("messages"), empty: $("empty"),
    messageForm: $("message-form"), message: $("message"), send: $("send"), messageError: $("message-error"),
    online: $("online"), onlineCount: $("online-count"), nobody: $("nobody"), leave: $("leave"),
  };

  let myName = null;        // set once the server accepted our newUser
  let onlineVersion = -1;   // presence snapshots can arrive out of order; keep the newest
  const shown = new Set();  // ids of the messages on the page (history and live broadcasts overlap)
  // An error shown under a field stays only while it is true: what would make it untrue, per error element.
  // {cause: "connection"} goes once the page is connected again; {cause: "input", sent, maxLength} once the person
  // has fixed the text (it fits maxLength, or for other refusals it is no longer the text refused).
  const errorCauses = new Map();
  let atEnd = true;  // whether the newest message is in view; it stays in view while the list changes size

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function showError(node, text, cause) {
    node.textContent = text || "";
    node.hidden = !text;
    if (text && cause) errorCauses.set(node, cause); else errorCauses.delete(node);
  }

  // Show a refused answer under its field, remembering what the person sent so a fix can take the error away.
  function showRefusal(node, answer, sent) {
    showError(node, answer.error, answer.cause && { cause: answer.cause, sent, maxLength: answer.maxLength });
  }

  function clearFixedError(node, value) {
    const cause = errorCauses.get(node);
    if (!cause || cause.cause !== "input") return;
    const fixed = cause.maxLength ? Array.from(value.trim()).length <= cause.maxLength : value !== cause.sent;
    if (fixed) showError(node, "");
  }

  function clearConnectionErrors() {
    for (const [node, cause] of errorCauses) if (cause.cause === "connection") showError(node, "");
  }

  function hueOf(name) {
    let hash = 0;
    for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) % 360;
    return String(hash);
  }

  function avatar(name) {
    const node = element("span", "avatar", Array.from(name)[0].toUpperCase());
    node.style.setProperty("--hue", hueOf(name));
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  function updateEmpty() {
    ui.empty.textContent = myName ? "No messages yet. Say hello!" : "Join to read and send messages.";
    ui.empty.hidden = ui.messages.children.length > 0;
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    atEnd = true;
  }

  function addMessage(message) {
    if (!message || shown.has(message.id)) return;
    shown.add(message.id);
    const item = element("li", message.name === myName ? "message mine" : "message");
    const body = element("div", "bubble");
    const meta = element("div", "meta");
    const when = element("time", "when", new Date(message.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    when.dateTime = new Date(message.ts).toISOString();
    meta.append(element("span", "who", message.name), when);
    body.append(meta, element("p", "text", message.text));
    item.append(avatar(message.name), body);
    ui.messages.append(item);
    updateEmpty();
    scrollToEnd();
  }

  function addNotice(text) {
    ui.messages.append(element("li", "notice", text));
    updateEmpty();
    scrollToEnd();
  }

  function showOnline(snapshot) {
    if (!snapshot || snapshot.version < onlineVersion) return;
    onlineVersion = snapshot.version;
    ui.online.replaceChildren(...snapshot.names.map((name) => {
      const item = element("li", name === myName ? "person me" : "person");
      item.append(avatar(name), element("span", "person-name", name));
      if (name === myName) item.append(element("span", "you", "you"));
      return item;
    }));
    ui.onlineCount.textContent = String(snapshot.names.length);
    ui.nobody.hidden = snapshot.names.length > 0;
  }

  function showJoined(answer) {
    myName = answer.name;
    ui.greeting.textContent = "Hi, " + myName + "!";
    ui.joinForm.hidden = true;
    ui.messageForm.hidden = false;
    ui.leave.hidden = false;
    showError(ui.joinError, "");
    ui.messages.replaceChildren();
    shown.clear();
    answer.history.forEach(addMessage);
    onlineVersion = -1;
    showOnline(answer.online);
    updateEmpty();
    ui.message.focus();
  }

  // Back to the join form; ``refusal`` is the answer that took us there (a failed re-join), if any.
  function showLeft(refusal) {
    const name = myName;
    myName = null;
    ui.greeting.textContent = "Hi!";
    ui.joinForm.hidden = false;
    ui.messageForm.hidden = true;
    ui.leave.hidden = true;
    ui.messages.replaceChildren();
    shown.clear();
    if (refusal) {
      ui.name.value = name;
      showRefusal(ui.joinError, refusal, name);
    } else {
      showError(ui.joinError, "");
    }
    updateEmpty();
  }

  // Ask the server and hand its answer to onAnswer; a lost connection or a silent server becomes an error text,
  // which the next (re)connection takes away.
  function request(socket, event, payload, onAnswer) {
    if (!socket.connected) {
      onAnswer({ ok: false, error: "Not connected to the chat server; waiting to reconnect…", cause: "connection" });
      return;
    }
    socket.timeout(ANSWER_TIMEOUT_MS).emit(event, payload, (timedOut, answer) => {
      onAnswer(timedOut
        ? { ok: false, error: "The chat server did not answer; please try again.", cause: "connection" }
        : answer);
    });
  }

  if (typeof io !== "function") {
    setStatus("offline", "Offline: the Socket.IO client did not load");
    ui.join.disabled = true;
    return;
  }
  updateEmpty();
  // A notice appearing under the list (or a phone's keyboard opening) makes the list shorter: keep the newest
  // message in view if it was, instead of letting it slide out of sight.
  ui.messages.addEventListener("scroll", () => {
    atEnd = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 2;
  });
  new ResizeObserver(() => { if (atEnd) scrollToEnd(); }).observe(ui.messages);
  ui.name.addEventListener("input", () => clearFixedError(ui.joinError, ui.name.value));
  ui.message.addEventListener("input", () => clearFixedError(ui.messageError, ui.message.value));

  // The server's heartbeat (chatroom/app.py) tells a silent server within seconds; a lost network, Socket.IO's
  // client notices at once (it listens for the browser's "offline" event).
  const socket = io({ reconnectionDelayMax: 5000 });

  socket.on("connect", () => {
    setStatus("online", "Connected");
    clearConnectionErrors();
    request(socket, "whoIsOnline", null, (answer) => { if (answer.ok) showOnline(answer); });
    if (myName) {  // the server forgot us when the connection dropped: join again under the same name
      request(socket, "newUser", myName, (answer) => {
        if (answer.ok) showJoined(answer); else showLeft(answer);
      });
    }
  });
  socket.on("disconnect", (reason) => {
    setStatus("offline", "Disconnected, reconnecting…");
    if (reason === "io server disconnect") socket.connect();
  });
  socket.on("connect_error", () => setStatus("offline", "Cannot reach the chat server, retrying…"));
  socket.io.on("reconnect_attempt", (attempt) => setStatus("connecting", "Reconnecting (attempt " + attempt + ")…"));

  socket.on("whoIsOnline", showOnline);
  socket.on("newMessage", addMessage);
  socket.on("presence", (change) => {
    if (myName && change.name !== myName) addNotice(change.name + (change.event === "joined" ? " joined" : " left"));
  });

  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ui.join.disabled = true;
    const sent = ui.name.value;
    request(socket, "newUser", sent, (answer) => {
      ui.join.disabled = false;
      if (answer.ok) showJoined(answer); else showRefusal(ui.joinError, answer, sent);
    });
  });

  ui.messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ui.send.disabled = true;
    const sent = ui.message.value;
    request(socket, "newMessage", sent, (answer) => {
      ui.send.disabled = false;
      if (!answer.ok) {
        showRefusal(ui.messageError, answer, sent);
        return;
      }
      showError(ui.messageError, "");
      ui.message.value = "";
      addMessage(answer.message);
      ui.message.focus();
    });
  });

  ui.leave.addEventListener("click", () => {
    request(socket, "leave", null, (answer) => {
      if (answer.ok) showLeft(null); else showRefusal(ui.messageError, answer, ui.message.value);
    });
  });
})();
