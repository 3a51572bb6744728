import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { api, ApiError, type Credential, loadCredential, saveCredential, setUnauthorizedHandler } from "./api";
import { LimitsView } from "./limits";
import { OverviewView } from "./overview";
import { SessionView } from "./session";
import { SessionsView } from "./sessions";
import type { Config } from "./types";

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash || "#/");
  useEffect(() => {
    const changed = () => setHash(window.location.hash || "#/");
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function SignIn(props: { onDone: () => void; reason: string }) {
  const [kind, setKind] = useState<Credential["kind"]>("key");
  const [value, setValue] = useState("");
  return (
    <form
      id="sign-in"
      class="panel attention"
      onSubmit={(e) => {
        e.preventDefault();
        saveCredential(value ? { kind, value } : null);
        props.onDone();
      }}
    >
      <p>{props.reason}</p>
      <select id="credential-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as Credential["kind"])}>
        <option value="key">API key (x-api-key)</option>
        <option value="bearer">Bearer token (JWT)</option>
      </select>
      <input
        id="credential"
        type="password"
        autocomplete="off"
        placeholder="key or token"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
      />
      <button id="sign-in-button" type="submit">
        Use it
      </button>
      <p class="muted">Kept in this tab's sessionStorage and sent in a header with every call.</p>
    </form>
  );
}

function App() {
  const hash = useHash();
  const [config, setConfig] = useState<Config | null>(null);
  const [asking, setAsking] = useState<string | null>(null);
  const [epoch, setEpoch] = useState(0);

  useEffect(() => {
    setUnauthorizedHandler(() => setAsking("The server asks for an API key or a bearer token."));
    api<Config>("/inspector/config")
      .then((c) => {
        setConfig(c);
        if (c.auth_required && !loadCredential()) setAsking("The server asks for an API key or a bearer token.");
      })
      .catch((err: unknown) => {
        if (!(err instanceof ApiError && err.status === 401)) setConfig(null);
      });
  }, [epoch]);

  const parts = hash.replace(/^#\/?/, "").split("/");
  let view;
  if (asking) {
    view = (
      <SignIn
        reason={asking}
        onDone={() => {
          setAsking(null);
          setEpoch((n) => n + 1);
        }}
      />
    );
  } else if (parts[0] === "threads" && parts[1]) {
    view = <SessionView key={`${parts[1]}/${epoch}`} threadId={parts[1]} runId={parts[3] ?? null} config={config} />;
  } else if (parts[0] === "sessions") {
    view = <SessionsView key={epoch} />;
  } else if (parts[0] === "limits") {
    view = <LimitsView key={epoch} />;
  } else {
    view = <OverviewView key={epoch} />;
  }
  const signedIn = loadCredential() !== null;
  return (
    <>
      <header>
        <h1>stepstream inspector</h1>
        <nav>
          <a href="#/">Overview</a>
          <a href="#/sessions">Sessions</a>
          <a href="#/limits">Rate limits</a>
        </nav>
        <span class="muted" id="replica">
          {config ? `served by ${config.replica}` : ""}
        </span>
        {signedIn ? (
          <button
            id="sign-out"
            onClick={() => {
              saveCredential(null);
              setEpoch((n) => n + 1);
            }}
          >
            Forget key
          </button>
        ) : (
          <button id="sign-in-open" onClick={() => setAsking("An API key or bearer token for this server:")}>
            Key…
          </button>
        )}
      </header>
      <main>{view}</main>
    </>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
