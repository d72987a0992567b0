import { StatusBar } from "expo-status-bar";
import { useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { AppState, BackHandler, Platform, Pressable, StatusBar as NativeStatusBar, Text, View } from "react-native";

import type { WebSocketConstructor } from "./src/cloudws";
import { DeploymentMonitor, type MonitorOptions } from "./src/monitor";
import type { Fetch, Session } from "./src/session";
import { DeploymentList } from "./src/ui/DeploymentList";
import { DeploymentScreen } from "./src/ui/DeploymentScreen";
import { SignIn } from "./src/ui/SignIn";
import { ConnectionPill } from "./src/ui/StatusPill";
import { styles } from "./src/ui/theme";

export interface AppProps {
  /** Start signed in (tests); otherwise the sign-in screen asks. */
  session?: Session;
  /** The WebSocket implementation: the platform's by default (the Node tests pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** For the sign-in and the local stack's outputs: the platform's `fetch` by default. */
  fetchImpl?: Fetch;
  /** Milliseconds between list refreshes. */
  listInterval?: number;
}

// Below the status bar: Android reports its height; iOS's notch area is about 47 points.
const TOP = Platform.select({ ios: 47, android: NativeStatusBar.currentHeight ?? 24, default: 0 });

export default function App({ session: initial, WebSocket, fetchImpl, listInterval }: AppProps) {
  const [session, setSession] = useState<Session | undefined>(initial);
  return (
    <View style={[styles.screen, { paddingTop: TOP }]}>
      <StatusBar style="light" />
      {session === undefined ? (
        <>
          <View style={styles.header}>
            <Text style={styles.headerTitle} accessibilityRole="header">
              cloud-ws
            </Text>
          </View>
          <SignIn onSession={setSession} {...(fetchImpl ? { fetchImpl } : {})} />
        </>
      ) : (
        <Monitor
          session={session}
          options={{ ...(WebSocket ? { WebSocket } : {}), ...(listInterval !== undefined ? { listInterval } : {}) }}
          onSignOut={() => setSession(undefined)}
        />
      )}
    </View>
  );
}

function Monitor({ session, options, onSignOut }: { session: Session; options: MonitorOptions; onSignOut: () => void }) {
  // One monitor per session; the options are fixed for its life.
  const monitor = useMemo(() => new DeploymentMonitor(session, options), [session]);
  const view = useSyncExternalStore(monitor.subscribe, monitor.getView);

  useEffect(() => {
    monitor.start();
    // The socket lives while the app is in the foreground: closed in the background, and on
    // return a fresh one starts from the server's snapshot. `inactive` (iOS: the app switcher,
    // a call banner) is a moment, not a departure: the socket stays.
    const subscription = AppState.addEventListener("change", (next) => {
      if (next === "background") {
        void monitor.pause();
      } else if (next === "active") {
        monitor.resume();
      }
    });
    return () => {
      subscription.remove();
      void monitor.stop();
    };
  }, [monitor]);

  // Android's back button (and gesture) goes from a deployment back to the list, not out of the app.
  useEffect(() => {
    if (view.selected === null) {
      return undefined;
    }
    const subscription = BackHandler.addEventListener("hardwareBackPress", () => {
      monitor.back();
      return true;
    });
    return () => subscription.remove();
  }, [monitor, view.selected]);

  return (
    <>
      <View style={styles.header}>
        {view.selected !== null ? (
          <Pressable onPress={() => monitor.back()} accessibilityRole="button" accessibilityLabel="Back to the list" testID="back" hitSlop={8}>
            <Text style={styles.headerButton}>‹ List</Text>
          </Pressable>
        ) : null}
        <Text style={styles.headerTitle} numberOfLines={1} accessibilityRole="header">
          {view.selected ?? "Deployments"}
        </Text>
        <ConnectionPill connection={view.connection} />
        {view.selected === null ? (
          <Pressable onPress={onSignOut} accessibilityRole="button" testID="sign-out" hitSlop={8}>
            <Text style={[styles.headerButton, { paddingRight: 0 }]}>Sign out</Text>
          </Pressable>
        ) : null}
      </View>
      {view.connection === "paused" ? (
        <View style={styles.notice}>
          <Text style={styles.noticeText}>Paused in the background: resumes from the latest state.</Text>
        </View>
      ) : null}
      {view.selected === null ? (
        <>
          {view.error ? <Text style={[styles.error, { marginHorizontal: 16 }]}>{view.error}</Text> : null}
          <DeploymentList deployments={view.deployments} onOpen={(id) => monitor.open(id)} onRefresh={() => monitor.refreshList()} />
        </>
      ) : (
        <DeploymentScreen state={view.state} error={view.error} />
      )}
    </>
  );
}
