import { useState } from "react";
import { Pressable, ScrollView, Text, TextInput, View } from "react-native";

import { type Fetch, LOCAL_DEV_PASSWORD, loadOutputs, pastedToken, type Session, signIn } from "../session";
import { styles } from "./theme";

type Mode = "password" | "token";

const PLACEHOLDER = "#9ca3af";

/**
 * Where and who: the stack (its outputs JSON, or a `cloud-ws local` address)
 * and either a Cognito sign-in or a pasted token (`cloud-ws token` prints one).
 */
export function SignIn({ onSession, fetchImpl = fetch }: { onSession: (session: Session) => void; fetchImpl?: Fetch }) {
  const [stack, setStack] = useState("");
  const [mode, setMode] = useState<Mode>("password");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (): Promise<void> => {
    setBusy(true);
    setError(null);
    try {
      const outputs = await loadOutputs(stack, fetchImpl);
      if (mode === "token") {
        onSession(pastedToken(outputs, token));
      } else {
        // Against cloud-ws local, empty fields mean its dev user.
        const local = outputs.aws_endpoint_url !== undefined;
        const user = username.trim() || (local ? (outputs.dev_username ?? "dev") : "");
        onSession(await signIn(outputs, user, password || (local ? LOCAL_DEV_PASSWORD : ""), fetchImpl));
      }
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
      setBusy(false);
    }
  };

  return (
    <ScrollView contentContainerStyle={{ padding: 16 }} keyboardShouldPersistTaps="handled">
      <Text style={[styles.body, { marginTop: 4 }]}>Watch your deployments live. Connect to a cloud-ws stack:</Text>

      <Text style={styles.label} nativeID="stack-label">
        Stack
      </Text>
      <TextInput
        style={[styles.input, { minHeight: 64 }]}
        value={stack}
        onChangeText={setStack}
        placeholderTextColor={PLACEHOLDER}
        placeholder="http://192.168.1.20:8080 or the outputs JSON"
        autoCapitalize="none"
        autoCorrect={false}
        multiline
        accessibilityLabel="Stack"
        accessibilityLabelledBy="stack-label"
        testID="stack-input"
      />

      <View style={styles.tabs} accessibilityRole="tablist">
        {(["password", "token"] as const).map((value) => (
          <Pressable
            key={value}
            style={[styles.tab, mode === value ? styles.tabActive : null]}
            onPress={() => setMode(value)}
            accessibilityRole="tab"
            accessibilityState={{ selected: mode === value }}
            testID={`mode-${value}`}
          >
            <Text style={[styles.tabText, mode === value ? styles.tabTextActive : null]}>
              {value === "password" ? "Sign in" : "Paste a token"}
            </Text>
          </Pressable>
        ))}
      </View>

      {mode === "password" ? (
        <>
          <Text style={styles.label}>User</Text>
          <TextInput
            style={styles.input}
            value={username}
            onChangeText={setUsername}
            placeholderTextColor={PLACEHOLDER}
            placeholder="dev on cloud-ws local"
            autoCapitalize="none"
            autoCorrect={false}
            autoComplete="username"
            accessibilityLabel="User"
            testID="username-input"
          />
          <Text style={styles.label}>Password</Text>
          <TextInput
            style={styles.input}
            value={password}
            onChangeText={setPassword}
            placeholderTextColor={PLACEHOLDER}
            placeholder="the local dev password if empty"
            secureTextEntry
            autoComplete="password"
            accessibilityLabel="Password"
            testID="password-input"
          />
        </>
      ) : (
        <>
          <Text style={styles.label}>Token</Text>
          <TextInput
            style={[styles.input, { minHeight: 64 }]}
            value={token}
            onChangeText={setToken}
            placeholderTextColor={PLACEHOLDER}
            placeholder="eyJ… (cloud-ws token prints one)"
            autoCapitalize="none"
            autoCorrect={false}
            multiline
            accessibilityLabel="Token"
            testID="token-input"
          />
        </>
      )}

      {error ? (
        <Text style={styles.error} accessibilityRole="alert" testID="sign-in-error">
          {error}
        </Text>
      ) : null}

      <Pressable
        style={[styles.button, busy ? { opacity: 0.6 } : null]}
        onPress={() => void submit()}
        disabled={busy}
        accessibilityRole="button"
        testID="connect"
      >
        <Text style={styles.buttonText}>{busy ? "Connecting…" : "Connect"}</Text>
      </Pressable>
    </ScrollView>
  );
}
